"""The health check's cadence, stored in a ``RuntimeSetting`` row so every process sees it.

Cron calls ``webhook_health_check --if-due`` every minute; the stored interval (5 minutes when
healthy, 2 when not) decides whether this call runs the check. Settings are never changed at
run time: another process would not see the change.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.monitoring.models import HealthStatus

log = logging.getLogger(__name__)

SCHEDULE_KEY = "monitoring.health_check"
# Cron starts jobs a little before or after the minute: without slack a check due at
# 300 s that runs at 299.8 s would wait for the next minute.
DUE_SLACK_SECONDS = 5


def _row_value() -> dict:
    from apps.webhooks.models import RuntimeSetting

    value = RuntimeSetting.objects.filter(key=SCHEDULE_KEY).values_list("value", flat=True)
    return dict(value.first() or {})


def _save(**changes: object) -> None:
    from apps.webhooks.models import RuntimeSetting

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


def is_due(now: datetime | None = None) -> tuple[bool, str]:
    """Whether cron's call should run the check now, and why."""
    from apps.monitoring.services.health_document import urgent_reason

    now = now or timezone.now()
    try:
        current = state()
        last = current["last_run_at"]
        if last is None:
            return True, "no check has run yet"
        elapsed = (now - last).total_seconds()
        if elapsed >= current["interval_seconds"] - DUE_SLACK_SECONDS:
            return True, f"{int(elapsed)} s since the last check"
        # When not healthy the 2-minute cadence already covers a dying worker.
        if current["last_status"] == HealthStatus.HEALTHY:
            reason = urgent_reason(now)
            if reason:
                return True, reason
    except DatabaseError:
        # Nothing can be read: run, so that the database outage itself is alerted.
        return True, "database unreachable"
    next_at = last + timedelta(seconds=current["interval_seconds"])
    return False, f"next check due at {next_at.isoformat()}"
