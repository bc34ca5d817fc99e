"""Monitoring at scale: 100,000 subscriptions and 1,000,000 notifications in the last 24 hours.

Builds the data set itself with ``generate_series`` (a minute or two) in its own database
(`calendar_sync_bench_scale`, recreated each run), then times what operators and Prometheus
hit: the health check (``get_system_health``), the dashboard JSON, the ``/metrics`` scrape and
the dashboard page, counting the queries of each. `python -m bench scale` runs it alone.

Targets: health check, dashboard JSON and /metrics <= 300 ms each, dashboard page <= 500 ms,
each with a bounded number of queries (the same whatever the row counts).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from bench.support import fresh_django, in_child, run_in_own_database

DB_NAME = "calendar_sync_bench_scale"
SUBSCRIPTIONS = int(os.environ.get("BENCH_SCALE_SUBSCRIPTIONS", 100_000))
NOTIFICATIONS = int(os.environ.get("BENCH_SCALE_NOTIFICATIONS", 1_000_000))
CALENDARS_PER_ACCOUNT = 10
RUNS = 5
TARGETS_MS = {"health check": 300, "dashboard JSON": 300, "/metrics scrape": 300,
              "dashboard page": 500}
QUERY_LIMIT = 80


def main() -> int:
    if in_child():
        return _run()
    return run_in_own_database("bench.scale", DB_NAME)


# The data set: accounts of 10 calendars, one push subscription per calendar (95 % active),
# notifications spread evenly over the last 24 h (97 % completed, 1 % failed, the rest ignored
# or recently pending), provider API calls, and a health check every 5 minutes for 7 days.
BUILD_SQL = [
    """INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
       is_staff, is_active, date_joined) VALUES ('!', true, 'bench', '', '', '', true, true,
       now())""",
    """INSERT INTO calendars_calendaraccount (provider, email, access_token, refresh_token,
       status, last_error, created_at, updated_at, user_id)
       SELECT CASE WHEN mod(g, 2) = 0 THEN 'google' ELSE 'microsoft' END,
              'user' || g || '@bench',
              '', '', 'active', '', now(), now(), (SELECT min(id) FROM auth_user)
       FROM generate_series(1, %(accounts)s) g""",
    """INSERT INTO calendars_calendar (provider_calendar_id, name, sync_enabled,
       fallback_polling_enabled, sync_cursor, last_sync_error, sync_failure_count, created_at,
       calendar_account_id, last_synced_at)
       SELECT 'cal-' || a.id || '-' || c, 'Calendar ' || a.id || '/' || c, true, false, '', '',
              0, now() - interval '30 days', a.id, now() - (random() * interval '10 minutes')
       FROM calendars_calendaraccount a, generate_series(1, %(per_account)s) c""",
    """INSERT INTO webhooks_webhooksubscription (provider, channel_id, resource_id,
       resource_uri, status, failure_count, last_error, token_digest, created_at, updated_at,
       calendar_id, expires_at)
       SELECT a.provider, 'chan-' || c.id, 'res-' || c.id, '', CASE WHEN mod(c.id, 20) = 0
              THEN 'expired' ELSE 'active' END, 0, '', '', now() - interval '30 days', now(),
              c.id, now() + (mod(c.id, 72)) * interval '1 hour'
       FROM calendars_calendar c JOIN calendars_calendaraccount a ON a.id =
            c.calendar_account_id""",
    """INSERT INTO webhooks_webhooknotification (provider, kind, received_at, resource_state,
       dedup_key, headers, payload, processing_status, attempts, claimed_by, error,
       subscription_id, processed_at, processing_time_ms)
       SELECT s.provider, 'change', t.received, 'exists', 'n-' || g, '{}', '{}',
              t.status, 1, '', '', s.id,
              CASE WHEN t.status = 'pending' THEN NULL
                   ELSE t.received + (mod(g, 90)) * interval '1 second' END,
              CASE WHEN t.status = 'pending' THEN NULL ELSE 50 + mod((g * 7919), 900) END
       FROM generate_series(1::bigint, %(notifications)s) g
       JOIN webhooks_webhooksubscription s ON s.id = (SELECT min(id) FROM
            webhooks_webhooksubscription) + mod((g * 7919), %(subscriptions)s)
       CROSS JOIN LATERAL (SELECT now() - (g::float / %(notifications)s) * interval '24 hours'
            AS received, CASE WHEN mod(g, 100) = 0 THEN 'failed'
            WHEN mod(g, 100) = 1 THEN 'ignored' WHEN g < 200 THEN 'pending'
            ELSE 'completed' END AS status) t""",
    """INSERT INTO monitoring_providerapicall (provider, operation, status_code, duration_ms,
       error_kind, account_id, created_at)
       SELECT CASE WHEN mod(g, 2) = 0 THEN 'google' ELSE 'microsoft' END, 'list_changes', 200,
              80 + mod(g, 200), '', mod(g, 1000),
              now() - (g::float / 200000) * interval '24 hours'
       FROM generate_series(1, 200000) g""",
    """INSERT INTO monitoring_healthsnapshot (created_at, status, total_subscriptions,
       active_subscriptions, failed_subscriptions, success_rate, pending_notifications,
       document)
       SELECT now() - g * interval '5 minutes', 'healthy', %(subscriptions)s,
              %(subscriptions)s * 95 / 100, 0, 99.0, 0, '{}'
       FROM generate_series(0, 2015) g""",
]


def _build() -> float:
    from django.db import connection

    started = time.perf_counter()
    params = {"accounts": SUBSCRIPTIONS // CALENDARS_PER_ACCOUNT,
              "per_account": CALENDARS_PER_ACCOUNT, "subscriptions": SUBSCRIPTIONS,
              "notifications": NOTIFICATIONS}
    with connection.cursor() as cursor:
        for sql in BUILD_SQL:
            cursor.execute(sql, params if "%(" in sql else None)
        cursor.execute("ANALYZE")
    try:
        from apps.monitoring.services import rollups
    except ImportError:  # measuring a version without rollups
        pass
    else:
        rollups.backfill(hours=24 * 7)
    return time.perf_counter() - started


def _measure(name: str, call) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call()  # warm: imports, template compilation, connection
    timings, queries = [], 0
    for _ in range(RUNS):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            call()
            timings.append((time.perf_counter() - started) * 1000)
        queries = len(captured.captured_queries)
    return statistics.median(timings), queries


def _run() -> int:
    import django

    if os.environ.get("BENCH_SCALE_REUSE") == "1":  # time an already built data set
        django.setup()
    else:
        print(f"scale: building {SUBSCRIPTIONS:,} subscriptions and {NOTIFICATIONS:,} "
              f"notifications in the last 24 h", flush=True)
        fresh_django()
        print(f"scale: data set built in {_build():.0f} s", flush=True)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from apps.monitoring.services.health_document import get_system_health

    settings.ALLOWED_HOSTS = ["testserver"]  # the in-process test client's host
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))

    def page(path: str):
        def call():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
        return call

    checks = {
        "health check": get_system_health,
        "dashboard JSON": page("/webhooks/monitoring/dashboard/"),
        "/metrics scrape": page("/metrics"),
        "dashboard page": page("/webhooks/monitoring/"),
    }
    failures = 0
    for name, call in checks.items():
        ms, queries = _measure(name, call)
        target = TARGETS_MS[name]
        ok = ms <= target and queries <= QUERY_LIMIT
        failures += not ok
        print(f"  {name:16} {ms:7.1f} ms (target <= {target} ms, {ms / target:.2f} of it), "
              f"{queries} queries  {'ok' if ok else 'MISSED'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
