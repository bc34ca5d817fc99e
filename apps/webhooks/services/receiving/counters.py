"""Counting what the receivers did not store, and remembering channels nobody knows.

Rejected, orphan, ignored, duplicate and rate-limited requests are counted per hour and
provider in ``WebhookCounter``, additively and race-free (one upsert statement that adds).
Unknown channels are upserted into ``OrphanChannel`` (hits + 1) so that maintenance can stop
them. Both are best effort: a counter that cannot be written never changes the answer a
provider gets, and after a database failure they pause briefly so that refusals do not wait on
a database that is away.
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from apps.webhooks.models import OrphanChannel, WebhookCounter
from apps.webhooks.services.ttl_cache import TTLCache
from calendar_sync.sli import execute_best_effort

BEST_EFFORT_PAUSE_SECONDS = 5.0
# Set for BEST_EFFORT_PAUSE_SECONDS after a write failed: a database that is down is not
# asked again on every request.
_pause = TTLCache(max_entries=1)


def count_event(provider: str, kind: str, n: int = 1) -> None:
    """Add ``n`` to this hour's (provider, kind) counter. Best effort, never raises."""
    if n <= 0 or _best_effort_paused():
        return
    now = timezone.now()
    bucket = now.replace(minute=0, second=0, microsecond=0)
    table = connection.ops.quote_name(WebhookCounter._meta.db_table)
    # Additive upsert (bulk_create(update_conflicts=True) would overwrite, not add); the same
    # SQL works on PostgreSQL and SQLite >= 3.24.
    sql = (
        f"INSERT INTO {table} (bucket, provider, kind, count) VALUES (%s, %s, %s, %s) "
        f"ON CONFLICT (bucket, provider, kind) DO UPDATE SET count = {table}.count + excluded.count"
    )
    params = [connection.ops.adapt_datetimefield_value(bucket), provider, kind[:32], n]
    _best_effort(sql, params, what="counter")


def record_orphan(provider: str, channel_id: str, resource_id: str = "",
                  resource_uri: str = "", tenant_id: str = "") -> None:
    """Remember a channel we do not know (so maintenance can stop it): upsert, hits + 1."""
    if _best_effort_paused():
        return
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    table = connection.ops.quote_name(OrphanChannel._meta.db_table)
    sql = (
        f"INSERT INTO {table} (provider, channel_id, resource_id, resource_uri, tenant_id, "
        f"status, hits, first_seen_at, last_seen_at) VALUES (%s, %s, %s, %s, %s, %s, 1, %s, %s) "
        f"ON CONFLICT (provider, channel_id) DO UPDATE SET hits = {table}.hits + 1, "
        f"last_seen_at = excluded.last_seen_at, "
        f"resource_id = CASE WHEN excluded.resource_id <> '' THEN excluded.resource_id "
        f"ELSE {table}.resource_id END, "
        f"resource_uri = CASE WHEN excluded.resource_uri <> '' THEN excluded.resource_uri "
        f"ELSE {table}.resource_uri END, "
        f"tenant_id = CASE WHEN excluded.tenant_id <> '' THEN excluded.tenant_id "
        f"ELSE {table}.tenant_id END"
    )
    params = [provider, channel_id[:255], resource_id[:255], resource_uri[:2048],
              tenant_id[:64], OrphanChannel.Status.OPEN, now, now]
    _best_effort(sql, params, what="orphan")


def _best_effort(sql: str, params: list, what: str) -> None:
    if not execute_best_effort(sql, params, f"webhook {what}"):
        _pause.put("paused", True, BEST_EFFORT_PAUSE_SECONDS)


def _best_effort_paused() -> bool:
    return bool(_pause.get("paused", False))
