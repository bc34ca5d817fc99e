"""Settings shared by every environment.

Values come from the environment through the helpers in ``settings.env`` so that a malformed
value stops the process with a message naming the variable. Code reads these settings when it
runs (``settings.X`` at call time), never at import, so ``override_settings`` works in tests.
"""

from __future__ import annotations

import socket
import warnings
from datetime import timedelta
from pathlib import Path

from settings import deployment_phases
from settings.env import (
    ImproperEnvironment,
    env,
    envbool,
    envchoice,
    envfloat,
    envint,
    envlist,
    envnetworks,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var")))

# True only in settings.production: deployment validation is strict there.
PRODUCTION = False
SECRET_KEY = env("SECRET_KEY", "insecure-development-key-never-use-in-production")
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "apps.calendars",
    "apps.webhooks",
    "apps.monitoring",
    # Project-wide management commands (the scheduler, clean-up, deployment check, demo).
    "calendar_sync",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Webhook receivers stop here: they need none of the browser middleware below.
    "apps.webhooks.middleware.ReceiverFastPathMiddleware",
    # /static/ from gunicorn itself (make run, a container without nginx in front).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

# --- Admin login -----------------------------------------------------------------------------
# django-axes counts failed logins per client address and, separately, per username; either
# reaching the limit locks that address / username out for the cool-off time (a guessing run
# from many addresses against one account is stopped as well as one address trying many).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("ADMIN_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("ADMIN_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
# The client's address as the receivers see it (X-Forwarded-For only from a trusted proxy).
AXES_CLIENT_IP_CALLABLE = "apps.webhooks.services.receiving.ratelimit.client_ip"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

ROOT_URLCONF = "calendar_sync.urls"
WSGI_APPLICATION = "calendar_sync.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = env("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
# Without collectstatic (make run, tests) the files come straight from the apps' folders.
WHITENOISE_USE_FINDERS = envbool("WHITENOISE_USE_FINDERS", True)
# ... and STATIC_ROOT not existing there is expected, not worth a warning at every start.
warnings.filterwarnings("ignore", message="No directory at", module="whitenoise.base")
LOGIN_URL = "/admin/login/"

# --- Secrets at rest -----------------------------------------------------------------------
# Comma-separated Fernet keys; the first encrypts, all decrypt (rotation: prepend a new key,
# re-save rows, then drop the old key).
FIELD_ENCRYPTION_KEY = envlist("FIELD_ENCRYPTION_KEY", [])

# --- Receivers -----------------------------------------------------------------------------
WEBHOOK_BASE_URL = env("WEBHOOK_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
WEBHOOK_MAX_BODY_BYTES = envint("WEBHOOK_MAX_BODY_BYTES", 1_048_576, minimum=1024)
# Notifications in one Graph request (Graph batches far fewer): a larger batch is refused
# with 413 before its items are looked at, so one request's work stays bounded.
WEBHOOK_MAX_BATCH_ITEMS = envint("WEBHOOK_MAX_BATCH_ITEMS", 1000, minimum=1)
WEBHOOK_RATE_LIMIT_ENABLED = envbool("WEBHOOK_RATE_LIMIT_ENABLED", True)
# Limits what an abusive source can do (rejected requests per address, requests per unknown
# channel). Valid notifications are never refused for rate.
WEBHOOK_RATE_LIMIT_MAX_REQUESTS = envint("WEBHOOK_RATE_LIMIT_MAX_REQUESTS", 100, minimum=1)
WEBHOOK_RATE_LIMIT_WINDOW_SECONDS = envint("WEBHOOK_RATE_LIMIT_WINDOW_SECONDS", 60, minimum=1)
# Peers whose X-Forwarded-For is believed when rate limiting per client address (the reverse
# proxy in front of gunicorn). Anyone else's X-Forwarded-For is ignored.
WEBHOOK_TRUSTED_PROXIES = envnetworks("WEBHOOK_TRUSTED_PROXIES", ["127.0.0.1", "::1"])
# Unknown channels remembered per client address and day (a forger's random ids stop being
# recorded past this), and orphan stop calls per account and day (provider quota spent on
# channels we did not create).
WEBHOOK_ORPHANS_PER_SOURCE_PER_DAY = envint("WEBHOOK_ORPHANS_PER_SOURCE_PER_DAY", 200, minimum=0)
WEBHOOK_ORPHAN_STOPS_PER_ACCOUNT_PER_DAY = envint(
    "WEBHOOK_ORPHAN_STOPS_PER_ACCOUNT_PER_DAY", 20, minimum=0
)
# How long a receiver process may reuse what it read about a subscription (id, token digest,
# resource id). The storing statement re-checks those facts and the status, so a stale entry
# costs one more lookup, never a wrong answer. 0 disables the cache.
WEBHOOK_SUBSCRIPTION_CACHE_SECONDS = envfloat("WEBHOOK_SUBSCRIPTION_CACHE_SECONDS", 30.0)
# The receivers' storing statement is PREPAREd once per database session (PostgreSQL plans it
# once instead of on every notification: ~0.3 ms of server CPU each). Session state: set it to
# false behind a PgBouncer in transaction (or statement) pooling mode.
WEBHOOK_PREPARED_STATEMENTS = envbool("WEBHOOK_PREPARED_STATEMENTS", True)

# --- Feature flags and rollout -------------------------------------------------------------
WEBHOOKS_ENABLED = envbool("WEBHOOKS_ENABLED", True)
WEBHOOK_ROLLOUT_PERCENTAGE = envint("WEBHOOK_ROLLOUT_PERCENTAGE", 100, minimum=0, maximum=100)
WEBHOOK_USER_ROLLOUT_PERCENTAGE = envint(
    "WEBHOOK_USER_ROLLOUT_PERCENTAGE", 100, minimum=0, maximum=100
)
WEBHOOK_EARLY_ADOPTERS = [e.lower() for e in envlist("WEBHOOK_EARLY_ADOPTERS", [])]
# How long a process may keep using its cached copy of the runtime kill switch.
WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS = envfloat("WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS", 2.0)

# --- Subscription lifecycle ----------------------------------------------------------------
WEBHOOK_GOOGLE_CHANNEL_TTL_SECONDS = envint("WEBHOOK_GOOGLE_CHANNEL_TTL_SECONDS", 604_800)
# Graph rejects more than 10,070 minutes for Outlook events; stay below with margin.
WEBHOOK_GRAPH_SUBSCRIPTION_MINUTES = envint(
    "WEBHOOK_GRAPH_SUBSCRIPTION_MINUTES", 10_000, minimum=45, maximum=10_000
)
WEBHOOK_RENEW_REMAINING_FRACTION = envfloat("WEBHOOK_RENEW_REMAINING_FRACTION", 1 / 3)
WEBHOOK_RENEW_JITTER_FRACTION = envfloat("WEBHOOK_RENEW_JITTER_FRACTION", 0.1)
WEBHOOK_MAX_SUBSCRIPTION_FAILURES = envint("WEBHOOK_MAX_SUBSCRIPTION_FAILURES", 10, minimum=1)
WEBHOOK_REPAIR_BACKOFF_BASE_SECONDS = envint("WEBHOOK_REPAIR_BACKOFF_BASE_SECONDS", 60)
WEBHOOK_REPAIR_BACKOFF_MAX_SECONDS = envint("WEBHOOK_REPAIR_BACKOFF_MAX_SECONDS", 6 * 3600)
# An active subscription with no notification for this long is "silent": poll its calendar.
WEBHOOK_SILENT_SUBSCRIPTION_SECONDS = envint("WEBHOOK_SILENT_SUBSCRIPTION_SECONDS", 24 * 3600)
# A subscription still `pending` after this long was left by a crashed process: recreate it.
WEBHOOK_PENDING_STALE_SECONDS = envint("WEBHOOK_PENDING_STALE_SECONDS", 600, minimum=60)

# --- Worker --------------------------------------------------------------------------------
WORKER_BATCH_SIZE = envint("WORKER_BATCH_SIZE", 100, minimum=1)
WORKER_MAX_ATTEMPTS = envint("WORKER_MAX_ATTEMPTS", 8, minimum=1)
WORKER_RETRY_BASE_SECONDS = envfloat("WORKER_RETRY_BASE_SECONDS", 5.0)
WORKER_RETRY_MAX_SECONDS = envfloat("WORKER_RETRY_MAX_SECONDS", 3600.0)
# Longer than the slowest sync: a row left in `processing` past this is reclaimed.
# (minimum 5 so that crash tests can reclaim quickly; production keeps minutes.)
WORKER_VISIBILITY_TIMEOUT_SECONDS = envint("WORKER_VISIBILITY_TIMEOUT_SECONDS", 600, minimum=5)
WORKER_IDLE_POLL_SECONDS = envfloat("WORKER_IDLE_POLL_SECONDS", 1.0)
# Coalescing (apps/webhooks/services/queue/coalescing.py): a quiet calendar is synced on its first
# notification; a calendar is never synced twice within WORKER_COALESCE_SECONDS; a burst still
# arriving is awaited until quiet for WORKER_BURST_QUIET_SECONDS, at most
# WORKER_BURST_MAX_WAIT_SECONDS after its oldest notification.
WORKER_COALESCE_SECONDS = envfloat("WORKER_COALESCE_SECONDS", 1.0)
WORKER_BURST_QUIET_SECONDS = envfloat("WORKER_BURST_QUIET_SECONDS", 0.3)
WORKER_BURST_MAX_WAIT_SECONDS = envfloat("WORKER_BURST_MAX_WAIT_SECONDS", 3.0)
# Calendars one worker syncs at the same time (provider calls are network-bound; Graph allows
# 4 concurrent requests per mailbox). SQLite always uses 1.
WORKER_CONCURRENCY = envint("WORKER_CONCURRENCY", 4, minimum=1, maximum=32)
# After a NOTIFY wake-up the worker looks again a few times within this window: senders may
# skip NOTIFYs that follow one too closely (the receivers throttle theirs).
WORKER_NOTIFY_FOLLOW_UP_SECONDS = envfloat("WORKER_NOTIFY_FOLLOW_UP_SECONDS", 0.15)
WORKER_HEARTBEAT_STALE_SECONDS = envint("WORKER_HEARTBEAT_STALE_SECONDS", 180)
# A worker with no successful loop step for this long (the database unreachable, a bug)
# exits non-zero so that its supervisor restarts it; it touches WORKER_ALIVE_FILE after every
# successful step (the container health check reads its age).
WORKER_MAX_STALL_SECONDS = envint("WORKER_MAX_STALL_SECONDS", 300, minimum=10)
WORKER_ALIVE_FILE = env("WORKER_ALIVE_FILE", "")
# How often each worker checks that the scheduler still runs health checks.
WORKER_WATCH_SECONDS = envfloat("WORKER_WATCH_SECONDS", 30.0)

# --- Polling -------------------------------------------------------------------------------
POLL_INTERVAL_SECONDS = envint("POLL_INTERVAL_SECONDS", 900, minimum=30)
POLL_STALENESS_SECONDS = envint("POLL_STALENESS_SECONDS", 6 * 3600, minimum=60)
POLL_JITTER_FRACTION = envfloat("POLL_JITTER_FRACTION", 0.25)
# Graph calendarView delta needs a window; events outside it are not synced.
SYNC_WINDOW_PAST_DAYS = envint("SYNC_WINDOW_PAST_DAYS", 365)
SYNC_WINDOW_FUTURE_DAYS = envint("SYNC_WINDOW_FUTURE_DAYS", 730)
# Sync engine: per-account backoff after throttling / 5xx when the provider gives no
# Retry-After, and how soon a request for a calendar that is already syncing is retried.
SYNC_BACKOFF_BASE_SECONDS = envfloat("SYNC_BACKOFF_BASE_SECONDS", 2.0)
SYNC_BACKOFF_MAX_SECONDS = envfloat("SYNC_BACKOFF_MAX_SECONDS", 900.0)
SYNC_BUSY_RETRY_SECONDS = envfloat("SYNC_BUSY_RETRY_SECONDS", 1.0)
# `poll_calendars` without --once runs a pass this often (each calendar is still polled only
# when its jittered next_sync_at is due).
POLL_PASS_SECONDS = envint("POLL_PASS_SECONDS", 60, minimum=1)

# --- Providers -----------------------------------------------------------------------------
GOOGLE_CLIENT_ID = env("GOOGLE_CLIENT_ID", "calendar-sync-dev")
GOOGLE_CLIENT_SECRET = env("GOOGLE_CLIENT_SECRET", "")
MS_CLIENT_ID = env("MS_CLIENT_ID", "calendar-sync-dev")
MS_CLIENT_SECRET = env("MS_CLIENT_SECRET", "")
MS_TENANT = env("MS_TENANT", "common")
SANDBOX_URL = env("SANDBOX_URL", "http://127.0.0.1:8900").rstrip("/")
GOOGLE_API_BASE_URL = env("GOOGLE_API_BASE_URL", "https://www.googleapis.com").rstrip("/")
GOOGLE_OAUTH_BASE_URL = env("GOOGLE_OAUTH_BASE_URL", "https://accounts.google.com").rstrip("/")
GOOGLE_TOKEN_URL = env("GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token")
MS_GRAPH_BASE_URL = env("MS_GRAPH_BASE_URL", "https://graph.microsoft.com").rstrip("/")
MS_LOGIN_BASE_URL = env("MS_LOGIN_BASE_URL", "https://login.microsoftonline.com").rstrip("/")
PROVIDER_CONNECT_TIMEOUT_SECONDS = envfloat("PROVIDER_CONNECT_TIMEOUT_SECONDS", 5.0)
PROVIDER_READ_TIMEOUT_SECONDS = envfloat("PROVIDER_READ_TIMEOUT_SECONDS", 30.0)
# Calls per hour the provider grants us; api_quota_usage_percentage is measured against it.
PROVIDER_HOURLY_QUOTA = {
    "google": envint("GOOGLE_HOURLY_QUOTA", 600_000),
    "microsoft": envint("MS_HOURLY_QUOTA", 60_000),
}
# Provider clients and OAuth connect (apps/calendars/providers). Page sizes are settings so
# tests can force many small pages.
GOOGLE_EVENTS_PAGE_SIZE = envint("GOOGLE_EVENTS_PAGE_SIZE", 250, minimum=1, maximum=2500)
MS_DELTA_PAGE_SIZE = envint("MS_DELTA_PAGE_SIZE", 100, minimum=1, maximum=1000)
# An access token this close to expiry is refreshed before use.
PROVIDER_TOKEN_REFRESH_MARGIN_SECONDS = envint("PROVIDER_TOKEN_REFRESH_MARGIN_SECONDS", 60)
GOOGLE_OAUTH_SCOPES = envlist(
    "GOOGLE_OAUTH_SCOPES",
    ["openid", "email", "https://www.googleapis.com/auth/calendar.readonly"],
)
# offline_access is what makes Microsoft return a refresh token.
MS_OAUTH_SCOPES = envlist(
    "MS_OAUTH_SCOPES", ["openid", "email", "offline_access", "User.Read", "Calendars.Read"]
)
# Public origin for the OAuth redirect_uri (e.g. https://cal.example.com) when it differs from
# WEBHOOK_BASE_URL; empty: WEBHOOK_BASE_URL. Never taken from the request's Host header.
OAUTH_REDIRECT_BASE_URL = env("OAUTH_REDIRECT_BASE_URL", "").rstrip("/")

# --- Monitoring and alerting ---------------------------------------------------------------
# The channel names apps/monitoring/alert_channels implements; a typo must stop start-up, not
# silently drop that channel's alerts.
ALERT_CHANNEL_NAMES = ("email", "slack", "webhook", "pagerduty")
WEBHOOK_ALERT_CHANNELS = [c.lower() for c in envlist("WEBHOOK_ALERT_CHANNELS", [])]
if set(WEBHOOK_ALERT_CHANNELS) - set(ALERT_CHANNEL_NAMES):
    raise ImproperEnvironment(
        f"WEBHOOK_ALERT_CHANNELS names unknown channel(s) "
        f"{', '.join(sorted(set(WEBHOOK_ALERT_CHANNELS) - set(ALERT_CHANNEL_NAMES)))} "
        f"(known: {', '.join(ALERT_CHANNEL_NAMES)})")
# Named in every alert with the host, so a page says which deployment is in trouble.
ALERT_ENVIRONMENT = env("ALERT_ENVIRONMENT", "development")
WEBHOOK_ALERT_EMAIL_RECIPIENTS = envlist("WEBHOOK_ALERT_EMAIL_RECIPIENTS", [])
SLACK_WEBHOOK_URL = env("SLACK_WEBHOOK_URL", "")
EXTERNAL_ALERT_WEBHOOK_URL = env("EXTERNAL_ALERT_WEBHOOK_URL", "")
PAGERDUTY_ROUTING_KEY = env("PAGERDUTY_ROUTING_KEY", "")
PAGERDUTY_EVENTS_URL = env("PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue")
ALERT_REPEAT_INTERVAL_SECONDS = envint("ALERT_REPEAT_INTERVAL_SECONDS", 4 * 3600)
ALERT_DELIVERY_MAX_ATTEMPTS = envint("ALERT_DELIVERY_MAX_ATTEMPTS", 3, minimum=1)
# An open incident is resolved only after its condition has been clear this long (0: at the
# first clear check). A figure hovering around a threshold would otherwise open and resolve
# it at every check (every 1-2 min under cron --if-due). 600 s spans several checks at both
# the degraded (2 min) and normal (5 min) cadence, and the success rate window (10 min), while
# the "resolved" message still comes within a quarter of an hour of the repair.
ALERT_RESOLVE_AFTER_SECONDS = envint("ALERT_RESOLVE_AFTER_SECONDS", 600, minimum=0)
METRICS_TOKEN = env("METRICS_TOKEN", "")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "calendar-sync@localhost")

HEALTH_CHECK_INTERVAL_SECONDS = envint("HEALTH_CHECK_INTERVAL_SECONDS", 300)
HEALTH_DEGRADED_CHECK_INTERVAL_SECONDS = envint("HEALTH_DEGRADED_CHECK_INTERVAL_SECONDS", 120)
# Scheduled jobs may run on every host; runs are recorded under this name.
CLUSTER_HOST_NAME = env("CLUSTER_HOST_NAME", socket.gethostname())[:128]
# The workers raise `scheduler_stale` when the every-minute health-check job has not run for
# this long (two missed slots plus a minute for the run itself).
SCHEDULER_STALE_AFTER_SECONDS = envint("SCHEDULER_STALE_AFTER_SECONDS", 180, minimum=60)
# /webhooks/health/ fails when the last completed health check is older than this (three
# healthy intervals: a missed check or two is not an outage of the monitor).
HEALTH_CHECK_MAX_AGE_SECONDS = envint("HEALTH_CHECK_MAX_AGE_SECONDS", 900, minimum=60)
# External dead man's switch (healthchecks.io, Cronitor): URL/start, URL, URL/fail are pinged
# around every health-check run; empty: off.
HEALTHCHECK_PING_URL = env("HEALTHCHECK_PING_URL", "").rstrip("/")
# The status rules table; every threshold is a setting.
HEALTH_THRESHOLDS = {
    "subscription_health_healthy": envfloat("HEALTH_SUBSCRIPTION_HEALTHY_PCT", 95.0),
    "subscription_health_critical": envfloat("HEALTH_SUBSCRIPTION_CRITICAL_PCT", 80.0),
    "success_rate_healthy": envfloat("HEALTH_SUCCESS_HEALTHY_PCT", 95.0),
    "success_rate_critical": envfloat("HEALTH_SUCCESS_CRITICAL_PCT", 90.0),
    "old_pending_degraded": envint("HEALTH_OLD_PENDING_DEGRADED", 5),
    "old_pending_critical": envint("HEALTH_OLD_PENDING_CRITICAL", 20),
    "old_pending_age_seconds": envint("HEALTH_OLD_PENDING_AGE_SECONDS", 300),
    "failed_subscriptions_degraded": envint("HEALTH_FAILED_SUBS_DEGRADED", 5),
    "failed_subscriptions_critical": envint("HEALTH_FAILED_SUBS_CRITICAL", 10),
    "expiring_soon_seconds": envint("HEALTH_EXPIRING_SOON_SECONDS", 24 * 3600),
    "disk_free_min_fraction": envfloat("HEALTH_DISK_FREE_MIN_FRACTION", 0.05),
    "memory_available_min_fraction": envfloat("HEALTH_MEMORY_AVAILABLE_MIN_FRACTION", 0.05),
    # The success rate is measured over this recent window so that a
    # collapse shows within minutes; with fewer finished notifications than the minimum in it,
    # the whole day is used instead (one failure on a quiet night is not a collapse).
    "success_rate_window_seconds": envint("HEALTH_SUCCESS_RATE_WINDOW_SECONDS", 600, minimum=60),
    "success_rate_min_sample": envint("HEALTH_SUCCESS_RATE_MIN_SAMPLE", 10, minimum=1),
    # A warning (not a status change) when this share of last hour's provider calls failed.
    "api_error_rate_warning": envfloat("HEALTH_API_ERROR_RATE_WARNING_PCT", 25.0),
    "api_error_min_calls": envint("HEALTH_API_ERROR_MIN_CALLS", 20, minimum=1),
}
# Pause before retrying a transient alert delivery failure: base × 2^(attempt-1).
ALERT_DELIVERY_RETRY_BASE_SECONDS = envfloat("ALERT_DELIVERY_RETRY_BASE_SECONDS", 1.0)

# --- Service level objectives --------------------------------------------------------------
# Availability: share of valid provider requests answered 2xx. Freshness: share of changes
# visible locally within SLO_FRESHNESS_SECONDS. Burn-rate alerts follow the multiwindow,
# multi-burn-rate scheme: each rule fires when both its long and short window burn faster.
def _objective(name: str, default: float) -> float:
    """A fraction strictly between 0 and 1 (1 would leave no error budget to burn)."""
    value = envfloat(name, default)
    if not 0 < value < 1:
        raise ImproperEnvironment(f"{name} must be a fraction between 0 and 1, got {value}")
    return value


SLO_AVAILABILITY_OBJECTIVE = _objective("SLO_AVAILABILITY_OBJECTIVE", 0.999)
SLO_FRESHNESS_OBJECTIVE = _objective("SLO_FRESHNESS_OBJECTIVE", 0.99)
SLO_FRESHNESS_SECONDS = envint("SLO_FRESHNESS_SECONDS", 60, minimum=1)
SLO_BUDGET_WINDOW_DAYS = envint("SLO_BUDGET_WINDOW_DAYS", 28, minimum=1)
SLO_PROVIDERS = ("google", "microsoft")
SLO_BURN_RULES = [
    {"level": "critical", "long": "1h", "short": "5m",
     "threshold": envfloat("SLO_PAGE_FAST_BURN", 14.4)},
    {"level": "critical", "long": "6h", "short": "30m",
     "threshold": envfloat("SLO_PAGE_SLOW_BURN", 6.0)},
    {"level": "warning", "long": "3d", "short": "6h",
     "threshold": envfloat("SLO_WARN_BURN", 1.0)},
]

# --- Retention -----------------------------------------------------------------------------
CLEANUP_KEEP_FAILED_DAYS = envint("CLEANUP_KEEP_FAILED_DAYS", 90)
CLEANUP_BATCH_SIZE = envint("CLEANUP_BATCH_SIZE", 5000, minimum=100)

# --- Logging -------------------------------------------------------------------------------
LOG_DIR = env("LOG_DIR", str(VAR_DIR / "log"))
LOG_FORMAT = envchoice("LOG_FORMAT", "text", ("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "calendar_sync.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": envchoice(
        "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), upper=True)},
    "loggers": {
        "django.request": {"level": "ERROR"},
    },
}


def apply_deployment_phase(namespace: dict) -> None:
    """Overlay ``PHASE_N_SETTINGS`` when ``WEBHOOK_DEPLOYMENT_PHASE=N`` is set.

    Which wins when both are set: ``WEBHOOKS_ENABLED=false`` always wins (the deploy-time off
    switch must work whatever the phase says); a rollout percentage set in the environment that
    differs from the phase's is refused, since nobody can tell which one the operator meant.
    """
    phase = envint("WEBHOOK_DEPLOYMENT_PHASE", 0, minimum=0, maximum=5)
    if not phase:
        return
    overlay = deployment_phases.phase_settings(phase)
    for name in ("WEBHOOK_ROLLOUT_PERCENTAGE", "WEBHOOK_USER_ROLLOUT_PERCENTAGE"):
        if env(name).strip() and envint(name, 0) != overlay[name]:
            raise ImproperEnvironment(
                f"{name}={env(name)} conflicts with WEBHOOK_DEPLOYMENT_PHASE={phase} (which sets "
                f"{overlay[name]}): unset {name} or WEBHOOK_DEPLOYMENT_PHASE")
    if not envbool("WEBHOOKS_ENABLED", True):
        overlay["WEBHOOKS_ENABLED"] = False
    namespace.update(overlay)
    namespace["WEBHOOK_DEPLOYMENT_PHASE"] = phase


WEBHOOK_DEPLOYMENT_PHASE = 0
apply_deployment_phase(globals())
