"""Settings for `make bench` only: settings.test on a dedicated PostgreSQL database, with the
production-like knobs that matter for throughput (persistent connections, cached kill switch),
and ``bench.urls`` mounting the baseline view next to the real URL map."""

from __future__ import annotations

from settings.env import database_from_url, env
from settings.test import *  # noqa: F403
from settings.test import LOGGING

BENCH_DATABASE_URL = env("BENCH_DATABASE_URL",
                         "postgres://postgres@127.0.0.1:5432/calendar_sync_bench")
DATABASES = {"default": database_from_url(BENCH_DATABASE_URL, conn_max_age=600)}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
ROOT_URLCONF = "bench.urls"
DEBUG = False
# As in production: each process re-reads the runtime kill switch at most every 2 s.
WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS = 2.0
LOGGING["root"]["level"] = "WARNING"
