"""Prometheus metric definitions shared by every process (web, worker, commands).

Under gunicorn the exposition is multiprocess-safe when ``PROMETHEUS_MULTIPROC_DIR`` is set
(gunicorn.conf.py sets it; `make run` gives it to every process it starts). Labels are
bounded: provider, outcome, kind, operation — never an id.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Graph counts >2.9 s as slow and wants an answer within 3 s: keep a bucket edge there.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.9, 3.0, 5.0, 10.0)

NOTIFICATIONS = Counter(
    "calendar_sync_webhook_notifications",
    "Inbound notifications by provider and outcome "
    "(stored, duplicate, confirmed, rejected, ignored, orphan, invalid, rate_limited, "
    "unavailable).",
    ["provider", "outcome"],
)
# The receivers' rate limiter lets requests through when the shared cache is unreachable.
RATE_LIMIT_FAIL_OPEN = Counter(
    "calendar_sync_webhook_rate_limit_fail_open",
    "Rate-limit decisions skipped (request allowed) because the cache was unreachable.",
)
ACK_SECONDS = Histogram(
    "calendar_sync_webhook_ack_seconds",
    "Time from request start to acknowledgement, by provider.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
PROCESSING_SECONDS = Histogram(
    "calendar_sync_notification_processing_seconds",
    "Time the worker spent on a batch of one calendar's notifications.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
SYNCS = Counter(
    "calendar_sync_syncs",
    "Calendar syncs by provider, kind (incremental, full) and outcome (ok, error).",
    ["provider", "kind", "outcome"],
)
PROVIDER_CALLS = Counter(
    "calendar_sync_provider_api_calls",
    "Outbound provider API calls by provider, operation and error kind ('' when ok).",
    ["provider", "operation", "error_kind"],
)
PROVIDER_CALL_SECONDS = Histogram(
    "calendar_sync_provider_api_call_seconds",
    "Outbound provider API call duration.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
