"""The health check's cadence and last run, stored in a ``RuntimeSetting`` row so every
process sees it.

Cron calls ``webhook_health_check --if-due`` every minute; the stored interval (5 minutes when
healthy, 2 when not) decides whether this call runs the check (``health_cycle.is_due``), and
the webhooks health endpoint fails when the last run is too old. Both read this record, so it
lives here, not in the monitoring app (which nothing outside URLs and commands imports).
Settings are never changed at run time: another process would not see the change.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.webhooks.models import RuntimeSetting

SCHEDULE_KEY = "monitoring.health_check"


def _row_value() -> dict:
    value = RuntimeSetting.objects.filter(key=SCHEDULE_KEY).values_list("value", flat=True)
    return dict(value.first() or {})


def _save(**changes: object) -> None:
    value = _row_value()
    value.update(changes)
    RuntimeSetting.objects.update_or_create(
        key=SCHEDULE_KEY, defaults={"value": value, "updated_by": "health monitor"}
    )


def state() -> dict:
    """``interval_seconds``, ``last_run_at`` (datetime or None), ``last_status``."""
    value = _row_value()
    last = value.get("last_run_at")
    return {
        "interval_seconds": int(value.get("interval_seconds")
                                or settings.HEALTH_CHECK_INTERVAL_SECONDS),
        "last_run_at": parse_datetime(last) if last else None,
        "last_status": value.get("last_status", ""),
    }


def set_interval(seconds: int) -> bool:
    """Store the cadence; True when it changed."""
    if state()["interval_seconds"] == seconds:
        return False
    _save(interval_seconds=seconds)
    return True


def mark_run(status: str, now: datetime | None = None) -> None:
    now = now or timezone.now()
    _save(last_run_at=now.isoformat(), last_status=status)
