"""The embedded default: SQLite under var/, in-memory cache, the sandbox as both providers.

Runs on a fresh machine with nothing but Python. Web and worker processes share the SQLite file
(WAL mode plus a busy timeout).
"""

from __future__ import annotations

import base64
import hashlib

from settings.base import *  # noqa: F403
from settings.base import SANDBOX_URL, VAR_DIR, apply_deployment_phase
from settings.env import env, envbool, envlist

DEBUG = envbool("DEBUG", True)
VAR_DIR.mkdir(parents=True, exist_ok=True)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": env("SQLITE_PATH", str(VAR_DIR / "calendar_sync.sqlite3")),
        # Seconds a writer waits for the lock instead of failing with "database is locked".
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# A fixed development-only key: tokens in the dev database are sandbox tokens.
FIELD_ENCRYPTION_KEY = envlist(
    "FIELD_ENCRYPTION_KEY",
    [base64.urlsafe_b64encode(hashlib.sha256(b"calendar-sync-development").digest()).decode()],
)

GOOGLE_API_BASE_URL = env("GOOGLE_API_BASE_URL", SANDBOX_URL)
GOOGLE_OAUTH_BASE_URL = env("GOOGLE_OAUTH_BASE_URL", SANDBOX_URL)
GOOGLE_TOKEN_URL = env("GOOGLE_TOKEN_URL", f"{SANDBOX_URL}/token")
MS_GRAPH_BASE_URL = env("MS_GRAPH_BASE_URL", SANDBOX_URL)
MS_LOGIN_BASE_URL = env("MS_LOGIN_BASE_URL", SANDBOX_URL)
PAGERDUTY_EVENTS_URL = env("PAGERDUTY_EVENTS_URL", f"{SANDBOX_URL}/v2/enqueue")

apply_deployment_phase(globals())
