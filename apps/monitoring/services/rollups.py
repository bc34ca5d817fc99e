"""Reading the rollups for the dashboard (24 h series, 7-day status history, change-lag
percentiles, slowest calendars), keeping them (status hours, pruning) and rebuilding them from
recorded notifications (``backfill``: a database that predates the rollups, the scale bench).

Every read here touches at most a few thousand rows whatever the traffic: 24 hour rows per
provider, 168 status hours, 12 lag buckets per provider and hour, the top rows of each hour's
calendar index.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Sum
from django.utils import timezone

from apps.monitoring.models import (
    STATUS_RANK,
    CalendarHourRollup,
    ChangeLagBucket,
    ProviderApiCall,
    SliRollup,
    StatusHour,
)
from apps.webhooks.models import WebhookNotification, WebhookSubscription
from calendar_sync import sli

MINUTE_ROWS_KEPT = timedelta(hours=7)  # the 6 h window and a margin
CALENDAR_HOURS_KEPT = timedelta(hours=25)


def hour_rows(start: datetime) -> dict[datetime, dict]:
    """Hourly SliRollup sums over providers since ``start``, keyed by hour."""
    fields = list(sli.COUNT_FIELDS)
    rows = (SliRollup.objects.filter(resolution=SliRollup.Resolution.HOUR, bucket__gte=start)
            .values("bucket").annotate(**{f"sum_{f}": Sum(f) for f in fields}))
    return {r["bucket"]: {f: r[f"sum_{f}"] or 0 for f in fields} for r in rows}


def minute_sums(start: datetime) -> dict[str, dict]:
    """SliRollup sums per provider over the minute rows since ``start``."""
    fields = list(sli.COUNT_FIELDS)
    rows = (SliRollup.objects.filter(resolution=SliRollup.Resolution.MINUTE, bucket__gte=start)
            .values("provider").annotate(**{f"sum_{f}": Sum(f) for f in fields}))
    return {r["provider"]: {f: r[f"sum_{f}"] or 0 for f in fields} for r in rows}


def lag_percentiles(start: datetime, quantiles=(0.5, 0.95, 0.99)) -> dict[datetime, dict]:
    """Provider-last-modified → local-commit lag percentiles (seconds) per hour, estimated from
    the histogram by linear interpolation inside the bucket (as Prometheus does)."""
    counts: dict[datetime, dict[int, int]] = {}
    for hour, bound, n in (ChangeLagBucket.objects.filter(hour__gte=start)
                           .values("hour", "le_seconds").annotate(n=Sum("count"))
                           .values_list("hour", "le_seconds", "n")):
        counts.setdefault(hour, {})[bound] = n
    return {hour: {f"p{round(q * 100)}": _quantile(q, buckets) for q in quantiles}
            for hour, buckets in counts.items()}


def _quantile(q: float, buckets: dict[int, int]) -> float | None:
    total = sum(buckets.values())
    if not total:
        return None
    rank, seen, lower = q * total, 0, 0.0
    for bound in sli.LAG_BOUNDS:
        n = buckets.get(bound, 0)
        if not bound:  # +Inf: the highest finite bound is all that can be said
            return float(sli.LAG_BOUNDS[-2])
        if n and seen + n >= rank:
            return round(lower + (bound - lower) * (rank - seen) / n, 1)
        seen, lower = seen + n, float(bound)
    return None


def status_history(now: datetime | None = None, days: int = 7) -> list[dict]:
    """One entry per hour of the last ``days`` days, oldest first: the worst status a health
    check saw that hour (None: no check ran)."""
    now = now or timezone.now()
    current = sli.hour_of(now)
    slots = [current - timedelta(hours=h) for h in range(days * 24 - 1, -1, -1)]
    seen = {row["hour"]: row for row in StatusHour.objects.filter(hour__gte=slots[0]).values()}
    return [{"hour": slot, "status": seen[slot]["worst_status"] if slot in seen else None,
             "checks": (seen[slot]["healthy_checks"] + seen[slot]["degraded_checks"]
                        + seen[slot]["critical_checks"]) if slot in seen else 0}
            for slot in slots]


def record_status(status: str, now: datetime | None = None) -> None:
    """Count one health check's status in its hour (the worst status of the hour is kept)."""
    hour = sli.hour_of(now or timezone.now())
    column = f"{status}_checks"
    row, created = StatusHour.objects.get_or_create(
        hour=hour, defaults={"worst_status": status, column: 1})
    if created:
        return
    StatusHour.objects.filter(pk=row.pk).update(**{column: F(column) + 1})
    if STATUS_RANK[status] > STATUS_RANK.get(row.worst_status, 0):
        StatusHour.objects.filter(pk=row.pk).update(worst_status=status)


def slowest_calendars(now: datetime | None = None, limit: int = 10) -> list[dict]:
    """Calendars by their slowest hourly average processing time in the last 24 h: the top
    ``limit`` of each hour (read from the hour's index), merged."""
    now = now or timezone.now()
    current = sli.hour_of(now)
    best: dict[int, dict] = {}
    for h in range(24):
        for row in (CalendarHourRollup.objects.filter(hour=current - timedelta(hours=h))
                    .order_by("-avg_ms")
                    .values("calendar_id", "calendar__name", "calendar__last_synced_at",
                            "provider", "avg_ms", "max_ms", "notifications")[:limit]):
            kept = best.get(row["calendar_id"])
            if kept is None or row["avg_ms"] > kept["avg_ms"]:
                best[row["calendar_id"]] = row
    rows = sorted(best.values(), key=lambda r: -r["avg_ms"])[:limit]
    return [{"calendar": r["calendar__name"], "provider": r["provider"],
             "average_processing_time_ms": round(r["avg_ms"], 1),
             "max_processing_time_ms": r["max_ms"], "notifications": r["notifications"],
             "last_synced_at": r["calendar__last_synced_at"]} for r in rows]


def prune(now: datetime | None = None) -> None:
    """Drop rollup rows no window reads any more (the running totals are kept)."""
    now = now or timezone.now()
    keep_days = settings.SLO_BUDGET_WINDOW_DAYS + 1
    SliRollup.objects.filter(resolution=SliRollup.Resolution.MINUTE,
                             bucket__lt=now - MINUTE_ROWS_KEPT).delete()
    SliRollup.objects.filter(resolution=SliRollup.Resolution.HOUR,
                             bucket__lt=now - timedelta(days=keep_days)).delete()
    ChangeLagBucket.objects.filter(hour__lt=now - timedelta(days=keep_days)).delete()
    CalendarHourRollup.objects.filter(hour__lt=now - CALENDAR_HOURS_KEPT).delete()
    StatusHour.objects.filter(hour__lt=now - timedelta(days=keep_days)).delete()


# --- rebuilding from recorded notifications (PostgreSQL) ------------------------------------

BACKFILL_SQL = """
INSERT INTO {rollup} (bucket, resolution, provider, changes, changes_fresh,
                      notifications_received, notifications_ok, notifications_failed,
                      processing_ms_sum, processing_count, requests_ok, requests_failed)
SELECT date_trunc(%(unit)s, received_at), %(resolution)s, provider,
       count(*) FILTER (WHERE kind = 'change' AND processing_status IN ('completed', 'failed')),
       count(*) FILTER (WHERE kind = 'change' AND processing_status = 'completed'
                        AND processed_at - received_at <= %(fresh)s * interval '1 second'),
       count(*),
       count(*) FILTER (WHERE processing_status IN ('completed', 'ignored')),
       count(*) FILTER (WHERE processing_status = 'failed'),
       coalesce(sum(processing_time_ms), 0), count(processing_time_ms),
       count(*), 0
FROM {notification} WHERE received_at >= %(since)s
GROUP BY 1, 3
ON CONFLICT (resolution, bucket, provider) DO NOTHING
"""
BACKFILL_CALENDARS_SQL = """
INSERT INTO {calendar_rollup} (hour, calendar_id, provider, notifications, processing_ms_sum,
                               max_ms, avg_ms)
SELECT date_trunc('hour', n.received_at), s.calendar_id, min(n.provider), count(*),
       sum(n.processing_time_ms), max(n.processing_time_ms), avg(n.processing_time_ms)
FROM {notification} n JOIN {subscription} s ON s.id = n.subscription_id
WHERE n.received_at >= %(since)s AND n.processing_time_ms IS NOT NULL
GROUP BY 1, 2
ON CONFLICT (hour, calendar_id) DO NOTHING
"""

BACKFILL_API_SQL = """
INSERT INTO {rollup} (bucket, resolution, provider, api_calls, api_errors, api_ms_sum)
SELECT date_trunc('hour', created_at), 'hour', provider, count(*),
       count(*) FILTER (WHERE error_kind <> '' AND error_kind <> ALL(%(expected)s)),
       coalesce(sum(duration_ms), 0)
FROM {apicall} WHERE created_at >= %(since)s GROUP BY 1, 3
ON CONFLICT (resolution, bucket, provider) DO UPDATE SET api_calls = excluded.api_calls,
    api_errors = excluded.api_errors, api_ms_sum = excluded.api_ms_sum
"""
BACKFILL_TOTALS_SQL = """
INSERT INTO {rollup} (bucket, resolution, provider, changes, changes_fresh,
                      notifications_received, notifications_ok, notifications_failed,
                      processing_ms_sum, processing_count, requests_ok, requests_failed,
                      api_calls, api_errors, api_ms_sum)
SELECT %(epoch)s, 'total', provider, sum(changes), sum(changes_fresh),
       sum(notifications_received), sum(notifications_ok), sum(notifications_failed),
       sum(processing_ms_sum), sum(processing_count), sum(requests_ok), sum(requests_failed),
       sum(api_calls), sum(api_errors), sum(api_ms_sum)
FROM {rollup} WHERE resolution = 'hour' GROUP BY provider
ON CONFLICT (resolution, bucket, provider) DO NOTHING
"""


def backfill(hours: int = 24, now: datetime | None = None) -> None:
    """Build the rollups of the last ``hours`` from the notification table (one scan each),
    leaving buckets that already exist alone. Requests are counted as acknowledged: a stored
    notification was answered 2xx (the 5xx answers of the past were never stored)."""
    now = now or timezone.now()
    names = {"rollup": SliRollup._meta.db_table,
             "calendar_rollup": CalendarHourRollup._meta.db_table,
             "notification": WebhookNotification._meta.db_table,
             "subscription": WebhookSubscription._meta.db_table,
             "apicall": ProviderApiCall._meta.db_table}
    since = sli.hour_of(now) - timedelta(hours=hours - 1)
    fresh = settings.SLO_FRESHNESS_SECONDS
    with connection.cursor() as cursor:
        for unit, resolution, start in (("hour", "hour", since),
                                        ("minute", "minute", now - MINUTE_ROWS_KEPT)):
            cursor.execute(BACKFILL_SQL.format(**names), {
                "unit": unit, "resolution": resolution, "fresh": fresh, "since": start})
        cursor.execute(BACKFILL_CALENDARS_SQL.format(**names),
                       {"since": now - CALENDAR_HOURS_KEPT})
        cursor.execute(BACKFILL_API_SQL.format(**names),
                       {"since": since, "expected": list(sli.EXPECTED_ERROR_KINDS)})
        cursor.execute(BACKFILL_TOTALS_SQL.format(**names), {"epoch": sli.EPOCH})
