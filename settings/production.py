"""Production: everything from the environment; refuses to start without its secrets."""

from __future__ import annotations

from pathlib import Path

from settings.base import *  # noqa: F403
from settings.base import LOG_DIR, LOGGING, apply_deployment_phase
from settings.env import database_from_url, env, envbool, envint, envlist, require

SECRET_KEY = require("SECRET_KEY")
FIELD_ENCRYPTION_KEY = envlist("FIELD_ENCRYPTION_KEY", [])
if not FIELD_ENCRYPTION_KEY:
    require("FIELD_ENCRYPTION_KEY")
DEBUG = False
PRODUCTION = True
# Files collected into the image at build time (Dockerfile), compressed, with hashed names.
WHITENOISE_USE_FINDERS = envbool("WHITENOISE_USE_FINDERS", False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
ALERT_ENVIRONMENT = env("ALERT_ENVIRONMENT", "production")
# No wildcard default: the Host header is attacker-controlled (password-reset links, caches).
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", [])
if not ALLOWED_HOSTS:
    require("ALLOWED_HOSTS")

if env("DATABASE_URL"):
    DATABASES = {"default": database_from_url(env("DATABASE_URL"), conn_max_age=600)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": env("DB_NAME", "calendar_sync"),
            "USER": env("DB_USER", "calendar_sync"),
            "PASSWORD": env("DB_PASSWORD", ""),
            "HOST": env("DB_HOST", "localhost"),
            "PORT": env("DB_PORT", "5432"),
            "CONN_MAX_AGE": 600,
            "OPTIONS": {},
        }
    }
DATABASES["default"]["OPTIONS"].setdefault("sslmode", env("DB_SSLMODE", "prefer"))
# Below Graph's 3 s answer deadline: a database that hangs yields a fast 503 (providers retry).
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 2)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": env("REDIS_URL", "redis://localhost:6379/0"),
        "KEY_PREFIX": "calendar_sync",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    }
}

# /metrics without a token is public: only on purpose (METRICS_PUBLIC=true), never by omission.
if not env("METRICS_TOKEN") and not envbool("METRICS_PUBLIC", False):
    require("METRICS_TOKEN")

SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
# The health check is probed over plain HTTP inside the container network.
SECURE_REDIRECT_EXEMPT = [r"^webhooks/health/$", r"^metrics$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HSTS is Django's alone (nginx does not add it): one header, one setting to change it.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# Preloading is a one-way commitment for the whole domain: an operator's choice, not ours.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"
USE_X_FORWARDED_HOST = envbool("USE_X_FORWARDED_HOST", False)

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)

Path(LOG_DIR).mkdir(parents=True, exist_ok=True)
# Several processes (gunicorn workers, the worker, cron jobs) write these files: in-process
# rotation would race between them, so the files are rotated by logrotate (copy-free: the
# WatchedFileHandler reopens a file that was moved away).
_rotating = {
    "class": "logging.handlers.WatchedFileHandler",
    "formatter": LOGGING["handlers"]["console"]["formatter"],
}
LOGGING["handlers"]["webhooks_file"] = {**_rotating, "filename": f"{LOG_DIR}/webhooks.log"}
LOGGING["handlers"]["webhook_errors_file"] = {
    **_rotating,
    "filename": f"{LOG_DIR}/webhook_errors.log",
    "level": "ERROR",
}
LOGGING["loggers"]["apps"] = {
    "handlers": ["console", "webhooks_file", "webhook_errors_file"],
    "level": LOGGING["root"]["level"],
    "propagate": False,
}

apply_deployment_phase(globals())
