"""Feature flags: the global kill switch and the phased rollout.

Bucketing uses a stable digest (never Python's ``hash()``, which is salted per process), so every
process puts a calendar in the same bucket, and a bucket is fixed for life: raising a
percentage only ever adds calendars.

The kill switch has two layers: ``WEBHOOKS_ENABLED`` (deploy-time) and a runtime override in
the ``RuntimeSetting`` table that ``webhooks_switch`` and the admin write. Every process reads
the override through a short in-process cache, so a flip is seen within seconds without a
restart.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import DatabaseError

from apps.webhooks.models import RuntimeSetting

if TYPE_CHECKING:
    from apps.calendars.models import Calendar

KILL_SWITCH_KEY = "webhooks_enabled"
_cache_lock = threading.Lock()
_cached: tuple[float, bool | None] = (0.0, None)


def bucket(kind: str, identifier: object) -> int:
    """A number in [0, 100) that is the same in every process, on every machine."""
    digest = hashlib.sha256(f"{kind}:{identifier}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def runtime_override() -> bool | None:
    """The stored on/off override, or None when operators have not set one."""
    global _cached
    ttl = settings.WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS
    now = time.monotonic()
    with _cache_lock:
        fetched_at, value = _cached
        if ttl > 0 and now - fetched_at < ttl:
            return value
    try:
        row = RuntimeSetting.objects.filter(key=KILL_SWITCH_KEY).values_list("value", flat=True)
        stored = row.first()
    except DatabaseError:
        # Keep the last known value rather than flapping while the database is away.
        return _cached[1]
    value = None if stored is None else bool(stored.get("enabled"))
    with _cache_lock:
        _cached = (now, value)
    return value


def webhooks_enabled() -> bool:
    """The kill switch: deploy-time setting AND the runtime override."""
    if not settings.WEBHOOKS_ENABLED:
        return False
    override = runtime_override()
    return True if override is None else override


def set_runtime_switch(enabled: bool, by: str = "") -> None:
    RuntimeSetting.objects.update_or_create(
        key=KILL_SWITCH_KEY, defaults={"value": {"enabled": enabled}, "updated_by": by}
    )
    forget_cached_switch()


def clear_runtime_switch() -> None:
    RuntimeSetting.objects.filter(key=KILL_SWITCH_KEY).delete()
    forget_cached_switch()


def forget_cached_switch() -> None:
    global _cached
    with _cache_lock:
        _cached = (0.0, None)


def user_in_rollout(email: str, user_id: int) -> bool:
    if email.lower() in settings.WEBHOOK_EARLY_ADOPTERS:
        return True
    return bucket("user", user_id) < settings.WEBHOOK_USER_ROLLOUT_PERCENTAGE


def calendar_in_rollout(calendar: Calendar) -> bool:
    """Whether this calendar should be on push (ignoring the kill switch).

    Early adopters are always in. Otherwise both the user's bucket and the calendar's bucket
    must be under their percentages, so either percentage can stage the rollout.
    """
    account = calendar.calendar_account
    if account.email.lower() in settings.WEBHOOK_EARLY_ADOPTERS:
        return True
    return (
        bucket("user", account.user_id) < settings.WEBHOOK_USER_ROLLOUT_PERCENTAGE
        and bucket("calendar", calendar.pk) < settings.WEBHOOK_ROLLOUT_PERCENTAGE
    )


def push_wanted(calendar: Calendar) -> bool:
    """Push for this calendar: switched on, in the rollout, syncing, account usable."""
    return (
        calendar.sync_enabled
        and calendar.calendar_account.status == "active"
        and webhooks_enabled()
        and calendar_in_rollout(calendar)
    )
