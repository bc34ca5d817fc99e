"""Feature flags: the global kill switch and the phased rollout.

Bucketing uses a stable SHA-256 digest (never Python's built-in string hashing, which is salted
per process), so every process puts a calendar in the same bucket, and a bucket is fixed for
life: raising a percentage only ever adds calendars.

The kill switch has two layers: ``WEBHOOKS_ENABLED`` (deploy-time) and a runtime override in
the ``RuntimeSetting`` table that ``webhooks_switch`` and the admin write. Every process reads
the override through a short in-process cache, so a flip is seen within seconds without a
restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import Error

from apps.webhooks.models import RuntimeSetting
from apps.webhooks.services.ttl_cache import TTLCache
from calendar_sync.db import drop_connection

if TYPE_CHECKING:
    from apps.calendars.models import Calendar

KILL_SWITCH_KEY = "webhooks_enabled"
_override = TTLCache(max_entries=1)
_MISSING = object()


def bucket(kind: str, identifier: object) -> int:
    """A number in [0, 100) that is the same in every process, on every machine."""
    digest = hashlib.sha256(f"{kind}:{identifier}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def runtime_override() -> bool | None:
    """The stored on/off override, or None when operators have not set one."""
    cached = _override.get(KILL_SWITCH_KEY, _MISSING)
    if cached is not _MISSING:
        return cached
    try:
        row = RuntimeSetting.objects.filter(key=KILL_SWITCH_KEY).values_list("value", flat=True)
        stored = row.first()
    except Error:  # InterfaceError too; the next query reconnects
        drop_connection()
        # Keep the last known value rather than flapping while the database is away.
        return _override.last(KILL_SWITCH_KEY)
    value = _parse_switch(stored)
    _override.put(KILL_SWITCH_KEY, value, settings.WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS)
    return value


def _parse_switch(stored: object) -> bool | None:
    """``{"enabled": bool}`` as written by the command and the admin; a bare boolean (an
    operator editing the row by hand) is accepted too."""
    if stored is None:
        return None
    if isinstance(stored, dict):
        return bool(stored.get("enabled"))
    return bool(stored)


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
    _override.forget(KILL_SWITCH_KEY)


def clear_runtime_switch() -> None:
    RuntimeSetting.objects.filter(key=KILL_SWITCH_KEY).delete()
    _override.forget(KILL_SWITCH_KEY)


def _early_adopter(email: str) -> bool:
    # Lower-cased here too: override_settings in tests and phases may pass mixed case.
    return email.lower() in {e.lower() for e in settings.WEBHOOK_EARLY_ADOPTERS}


def user_in_rollout(email: str, user_id: int) -> bool:
    if _early_adopter(email):
        return True
    return bucket("user", user_id) < settings.WEBHOOK_USER_ROLLOUT_PERCENTAGE


def calendar_in_rollout(calendar: Calendar) -> bool:
    """Whether this calendar should be on push (ignoring the kill switch).

    Early adopters are always in. Otherwise both the user's bucket and the calendar's bucket
    must be under their percentages, so either percentage can stage the rollout.
    """
    account = calendar.calendar_account
    if _early_adopter(account.email):
        return True
    return (
        user_in_rollout(account.email, account.user_id)
        and bucket("calendar", calendar.pk) < settings.WEBHOOK_ROLLOUT_PERCENTAGE
    )


def push_unwanted_reason(calendar: Calendar, enabled: bool | None = None) -> str:
    """Why this calendar must not be on push ('' when it should be). ``enabled`` lets a
    maintenance run read the kill switch once for all calendars."""
    if not calendar.sync_enabled:
        return "sync disabled"
    if calendar.calendar_account.status != "active":
        return f"account {calendar.calendar_account.status}"
    if not (webhooks_enabled() if enabled is None else enabled):
        return "kill switch off"
    if not calendar_in_rollout(calendar):
        return "outside the rollout"
    return ""


def push_wanted(calendar: Calendar) -> bool:
    """Push for this calendar: switched on, in the rollout, syncing, account usable."""
    return not push_unwanted_reason(calendar)


@dataclass(frozen=True)
class SwitchState:
    deploy_enabled: bool  # WEBHOOKS_ENABLED
    override: bool | None  # the runtime override, None when unset
    effective: bool
    updated_at: datetime | None
    updated_by: str


def switch_state() -> SwitchState:
    """The kill switch as stored right now (bypasses the in-process cache)."""
    row = RuntimeSetting.objects.filter(key=KILL_SWITCH_KEY).first()
    override = None if row is None else _parse_switch(row.value)
    deploy = bool(settings.WEBHOOKS_ENABLED)
    return SwitchState(
        deploy_enabled=deploy, override=override,
        effective=deploy and (True if override is None else override),
        updated_at=row.updated_at if row else None, updated_by=row.updated_by if row else "",
    )
