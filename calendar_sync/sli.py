"""Recording what users feel as work completes: the rollup writes behind the SLOs.

* ``record(provider, ...)`` adds counts to this minute's, this hour's and the running total's
  ``monitoring.SliRollup`` rows in one additive upsert (race-free across processes).
* ``count_request(provider, status)`` is the receivers' availability count. It must work while
  the database is down (the 503s are what it is for), so it counts in the process, hands the
  counts to the cache (at once for a 5xx, else about once a second; kept in the process while
  the cache is down too), and ``flush_requests()`` (the health check, a scrape) moves them into
  the rollups.
* ``record_lags(provider, seconds)`` adds provider-last-modified → local-commit lags to the
  hourly histogram (``monitoring.ChangeLagBucket``).

The models are looked up by name, as ``calendar_sync.http`` does, so that every app may record
without importing ``monitoring``. Best effort: a count that cannot be written is logged, never
raised into the work it describes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, InterfaceError, connection, transaction
from django.utils import timezone

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Upper bounds (seconds) of the change-lag histogram; 0 stands for +Inf.
LAG_BOUNDS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 0)
COUNT_FIELDS = ("requests_ok", "requests_failed", "changes", "changes_fresh",
                "notifications_received", "notifications_ok", "notifications_failed",
                "processing_ms_sum", "processing_count", "api_calls", "api_errors", "api_ms_sum")
# Answers that are part of the protocols' normal flow, not provider errors: a 404 for an event
# already deleted, a 410 asking for a full sync.
EXPECTED_ERROR_KINDS = ("not_found", "cursor_expired")
REQUEST_KINDS = ("requests_ok", "requests_failed", "notifications_received")
# Cache keys are per minute; the flush looks this far back (a longer outage of the health
# check loses nothing older than the keys' lifetime, which is longer still).
FLUSH_LOOKBACK_MINUTES = 180
CACHE_KEY_TTL = 24 * 3600
FLUSH_LOCK, FLUSH_LOCK_SECONDS = "sli:flush-lock", 60
LAST_FLUSH_KEY = "sli:last-flush"  # the minute of the last flush that moved everything

# (minute iso, provider, kind) -> n not yet in the cache (batched, or the cache was down).
_pending: Counter = Counter()
_pending_lock = threading.Lock()
_last_push = 0.0
PUSH_INTERVAL_SECONDS = 1.0


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def is_fresh(lag_seconds: float) -> bool:
    return lag_seconds <= settings.SLO_FRESHNESS_SECONDS


def record(provider: str, at: datetime | None = None, **counts: int) -> bool:
    """Add ``counts`` (fields of SliRollup) to the minute, hour and total rows of ``at``.
    False if the database refused them."""
    counts = {k: int(v) for k, v in counts.items() if v}
    if not counts:
        return True
    at = at or timezone.now()
    model = apps.get_model("monitoring", "SliRollup")
    table = connection.ops.quote_name(model._meta.db_table)
    fields = [f for f in COUNT_FIELDS if f in counts]
    columns = ", ".join(["bucket", "resolution", "provider", *fields])
    placeholders = ", ".join(["%s"] * (3 + len(fields)))
    adds = ", ".join(f"{f} = {table}.{f} + excluded.{f}" for f in fields)
    # Columns left out take their database default (0) on insert.
    sql = (f"INSERT INTO {table} ({columns}) VALUES ({placeholders}), ({placeholders}), "
           f"({placeholders}) ON CONFLICT (resolution, bucket, provider) DO UPDATE SET {adds}")
    params: list = []
    for bucket, resolution in ((minute_of(at), "minute"), (hour_of(at), "hour"),
                               (EPOCH, "total")):
        params += [connection.ops.adapt_datetimefield_value(bucket), resolution, provider[:16],
                   *(counts[f] for f in fields)]
    return execute_best_effort(sql, params, "SLI counts")


def record_lags(provider: str, lags: Iterable[float], at: datetime | None = None) -> None:
    """Add provider-last-modified → local-commit lags (seconds) to the hourly histogram."""
    buckets: Counter = Counter(_lag_bound(max(0.0, lag)) for lag in lags)
    if not buckets:
        return
    model = apps.get_model("monitoring", "ChangeLagBucket")
    table = connection.ops.quote_name(model._meta.db_table)
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(buckets))
    sql = (f"INSERT INTO {table} (hour, provider, le_seconds, count) VALUES {rows} "
           f"ON CONFLICT (hour, provider, le_seconds) DO UPDATE "
           f"SET count = {table}.count + excluded.count")
    hour = connection.ops.adapt_datetimefield_value(hour_of(at or timezone.now()))
    params: list = []
    for bound, n in sorted(buckets.items()):
        params += [hour, provider[:16], bound, n]
    execute_best_effort(sql, params, "change lags")


def _lag_bound(lag: float) -> int:
    return next((b for b in LAG_BOUNDS if b and lag <= b), 0)


def record_calendar(calendar_id: int, provider: str, notifications: int, ms: int,
                    at: datetime | None = None) -> None:
    """Add ``notifications`` that took ``ms`` (each) to the calendar's hourly row."""
    if notifications <= 0:
        return
    model = apps.get_model("monitoring", "CalendarHourRollup")
    table = connection.ops.quote_name(model._meta.db_table)
    total = ms * notifications
    sql = (
        f"INSERT INTO {table} (hour, calendar_id, provider, notifications, processing_ms_sum, "
        f"max_ms, avg_ms) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (hour, calendar_id) DO UPDATE SET "
        f"notifications = {table}.notifications + excluded.notifications, "
        f"processing_ms_sum = {table}.processing_ms_sum + excluded.processing_ms_sum, "
        f"max_ms = CASE WHEN excluded.max_ms > {table}.max_ms THEN excluded.max_ms "
        f"ELSE {table}.max_ms END, "
        f"avg_ms = 1.0 * ({table}.processing_ms_sum + excluded.processing_ms_sum) "
        f"/ ({table}.notifications + excluded.notifications)"
    )
    hour = connection.ops.adapt_datetimefield_value(hour_of(at or timezone.now()))
    execute_best_effort(sql, [hour, calendar_id, provider[:16], notifications, total, ms,
                   float(ms)], "calendar rollup")


def execute_best_effort(sql: str, params: list, what: str) -> bool:
    """One statement that must never fail its caller: in a savepoint inside a transaction,
    else on its own; a database error is logged (type only) and answered False."""
    try:
        if connection.in_atomic_block:
            with transaction.atomic(), connection.cursor() as cursor:  # a savepoint
                cursor.execute(sql, params)
        else:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
    except (DatabaseError, InterfaceError) as exc:
        log.warning("%s not recorded: %s", what, type(exc).__name__)
        return False
    return True


# --- the receivers' availability counts: cache first, then the process ------------------------

def _cache_key(minute: str, provider: str, kind: str) -> str:
    return f"sli:{kind}:{provider}:{minute}"


def count_request(provider: str, status: int) -> None:
    """Count one valid provider request by the status it was answered with (2xx good, 5xx
    bad; 4xx refusals are not valid requests)."""
    if 200 <= status < 300:
        _add(provider, "requests_ok", 1, urgent=False)
    elif status >= 500:
        _add(provider, "requests_failed", 1, urgent=True)


def count_received(provider: str, stored: int) -> None:
    """Count newly stored notifications (the dashboard's 'received per hour')."""
    if stored > 0:
        _add(provider, "notifications_received", stored, urgent=False)


def _add(provider: str, kind: str, n: int, *, urgent: bool) -> None:
    """Count in this process; hand the counts to the cache at once for a failure (what the
    alerts wait for), else at most every PUSH_INTERVAL_SECONDS, so that the acknowledgement
    path does not pay a cache round trip per request."""
    global _last_push
    minute = minute_of(timezone.now()).isoformat()
    with _pending_lock:
        _pending[(minute, provider, kind)] += n
        due = urgent or time.monotonic() - _last_push >= PUSH_INTERVAL_SECONDS
        if due:
            _last_push = time.monotonic()
    if due:
        _pending_to_cache()


def _cache_add(minute: str, provider: str, kind: str, n: int) -> None:
    key = _cache_key(minute, provider, kind)
    try:
        cache.incr(key, n)  # the common case (this minute's key exists): one round trip
    except ValueError:  # no such key yet
        if not cache.add(key, n, CACHE_KEY_TTL):
            cache.incr(key, n)


def _pending_to_cache() -> None:
    """Hand the cache what this process counted (the health check runs in another process and
    reads only the cache); what the cache refuses stays here for the next push."""
    with _pending_lock:
        pending = dict(_pending)
        _pending.clear()
    for index, ((minute, provider, kind), n) in enumerate(pending.items()):
        try:
            _cache_add(minute, provider, kind, n)
        except Exception:  # noqa: BLE001 - down again: keep the rest for later
            with _pending_lock:
                for item in list(pending.items())[index:]:
                    _pending[item[0]] += item[1]
            return


def flush_requests(now: datetime | None = None) -> int:
    """Move the counted requests (cache and this process) into the rollups. Returns how many
    requests were moved. One flush at a time (a lock in the cache): the health check and a
    scrape may both call it, and what one moves is subtracted only after it is written."""
    moved = _flush_process()
    try:
        if not cache.add(FLUSH_LOCK, 1, FLUSH_LOCK_SECONDS):
            return moved  # another process is flushing right now
    except Exception:  # noqa: BLE001 - the cache is down: its counts wait for the next flush
        return moved
    try:
        return moved + _flush_cache(now or timezone.now())
    finally:
        try:
            cache.delete(FLUSH_LOCK)
        except Exception:  # noqa: BLE001 - it expires by itself
            pass


def _flush_cache(now: datetime) -> int:
    start = minute_of(now)
    # Back to a little before the last complete flush (at most FLUSH_LOOKBACK_MINUTES): with a
    # check every few minutes and a scrape every few seconds that is a handful of keys.
    last = cache.get(LAST_FLUSH_KEY)
    span = FLUSH_LOOKBACK_MINUTES
    since_last = (start - datetime.fromisoformat(last)).total_seconds() // 60 if last else -1
    if since_last >= 0:  # (a clock set back looks the whole way)
        span = min(span, int(since_last) + 2)
    minutes = [(start - timedelta(minutes=i)).isoformat() for i in range(span)]
    keys = [_cache_key(m, p, k) for m in minutes for p in settings.SLO_PROVIDERS
            for k in REQUEST_KINDS]
    try:
        found = cache.get_many(keys)
    except Exception:  # noqa: BLE001 - the cache is down: its counts wait for the next flush
        return 0
    moved = 0
    for key, n in found.items():
        if not n:
            continue
        _, kind, provider, minute = key.split(":", 3)
        # Written first, subtracted after: a database that refuses loses nothing (only a cache
        # failing between the two could count these twice).
        if not record(provider, datetime.fromisoformat(minute), **{kind: n}):
            break
        try:
            cache.decr(key, n)
        except Exception:  # noqa: BLE001
            log.warning("SLI counts flushed but not subtracted from the cache")
            break
        moved += n if kind != "notifications_received" else 0
    else:
        cache.set(LAST_FLUSH_KEY, start.isoformat(), CACHE_KEY_TTL)
    return moved


def _flush_process() -> int:
    with _pending_lock:
        pending = dict(_pending)
        _pending.clear()
    moved = 0
    for (minute, provider, kind), n in pending.items():
        if record(provider, datetime.fromisoformat(minute), **{kind: n}):
            moved += n if kind != "notifications_received" else 0
        else:  # the database refused: keep it for later
            with _pending_lock:
                _pending[(minute, provider, kind)] += n
    return moved


def discard_process_counts() -> None:
    """Forget what this process has not handed over yet (tests: each starts from nothing)."""
    global _last_push
    with _pending_lock:
        _pending.clear()
        _last_push = 0.0
