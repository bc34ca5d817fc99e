"""Watchers that watch each other: the workers watch the scheduler, the health check watches
the workers (their heartbeats), and an external dead man's switch watches the health check.

The health check can only alert while something runs it. Every worker (long-running, on every
host) therefore raises ``scheduler_stale`` through the same AlertManager when the every-minute
health-check job has not run for SCHEDULER_STALE_AFTER_SECONDS, and resolves it when it runs
again. Incidents open once per key, so many workers raise it once.
"""

from __future__ import annotations

import logging
from datetime import datetime

import requests
from django.conf import settings
from django.utils import timezone

from apps.monitoring.models import JobRun, Level
from apps.monitoring.services.alert_content import human_duration
from apps.monitoring.services.alerting import AlertManager
from calendar_sync import http

log = logging.getLogger(__name__)

STALE_KEY = "scheduler_stale"
HEALTH_CHECK_JOB = "health_check"


def last_health_check_activity() -> datetime | None:
    """When the health-check job last finished (or started, while a run is going)."""
    run = JobRun.objects.filter(job=HEALTH_CHECK_JOB).order_by("-started_at").first()
    return None if run is None else (run.finished_at or run.started_at)


def watch_scheduler(watching_since: datetime, now: datetime | None = None) -> bool:
    """Raise or resolve ``scheduler_stale``; True while stale. ``watching_since`` (the
    worker's start) stands in for the last run on a fresh installation."""
    now = now or timezone.now()
    seen = max(filter(None, (last_health_check_activity(), watching_since)))
    age = int((now - seen).total_seconds())
    manager = AlertManager(now=now)
    if age <= settings.SCHEDULER_STALE_AFTER_SECONDS:
        manager.resolve(STALE_KEY)
        return False
    log.error("no health check has run for %d s: is any scheduler running?", age)
    manager.report({
        "key": STALE_KEY, "level": Level.CRITICAL, "value": age, "affects_status": True,
        "title": "No health check is running",
        "message": (f"No health check has run for {human_duration(age)}: no scheduler "
                    "(run_scheduler or cron) is running anywhere, so nothing alerts, maintains "
                    "or cleans up. "
                    "Start `python manage.py run_scheduler` on at least one host."),
    })
    return True


def ping(suffix: str = "") -> None:
    """The dead man's switch (HEALTHCHECK_PING_URL + "/start", "", "/fail"); never raises:
    an unreachable monitoring service must not fail the check it watches."""
    base = settings.HEALTHCHECK_PING_URL
    if not base:
        return
    try:
        http.get(f"{base}{suffix}", timeout=5.0)
    except requests.RequestException as exc:
        log.warning("dead man's switch ping%s failed (%s)", suffix or " (success)",
                    type(exc).__name__)
