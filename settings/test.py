"""Test settings: real PostgreSQL and Redis (never skipped), providers at the sandbox."""

from __future__ import annotations

import base64
import hashlib

from settings.base import *  # noqa: F403
from settings.base import SANDBOX_URL
from settings.env import database_from_url, env

DATABASES = {
    "default": database_from_url(
        env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/calendar_sync")
    )
}
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/15")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "calendar_sync_test",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }
}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
FIELD_ENCRYPTION_KEY = [
    base64.urlsafe_b64encode(hashlib.sha256(b"calendar-sync-test").digest()).decode()
]
GOOGLE_API_BASE_URL = SANDBOX_URL
GOOGLE_OAUTH_BASE_URL = SANDBOX_URL
GOOGLE_TOKEN_URL = f"{SANDBOX_URL}/token"
MS_GRAPH_BASE_URL = SANDBOX_URL
MS_LOGIN_BASE_URL = SANDBOX_URL
PAGERDUTY_EVENTS_URL = f"{SANDBOX_URL}/v2/enqueue"
WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS = 0.0
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
