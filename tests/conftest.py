"""The suite talks to real PostgreSQL and Redis: if either is unreachable the run stops with an
error (never a silent skip). Fixtures and factories live in ``tests/support/``."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings as django_settings

pytest_plugins = ["tests.support.fixtures"]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    db = django_settings.DATABASES["default"]
    redis = urlparse(getattr(django_settings, "REDIS_URL", "redis://127.0.0.1:6379/15"))
    missing = []
    if db["ENGINE"].endswith("postgresql") and not _reachable(db["HOST"] or "127.0.0.1",
                                                             int(db["PORT"] or 5432)):
        missing.append(f"PostgreSQL at {db['HOST']}:{db['PORT']}")
    if not _reachable(redis.hostname or "127.0.0.1", redis.port or 6379):
        missing.append(f"Redis at {redis.hostname}:{redis.port}")
    if missing:
        pytest.exit("required services unreachable: " + ", ".join(missing), returncode=3)
