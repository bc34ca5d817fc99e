"""One health cycle, as cron runs it (``webhook_health_check``): build the health document,
respond, alert, record."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.utils import timezone

from apps.monitoring.models import HealthSnapshot, HealthStatus
from apps.monitoring.services import rollups, watchdog
from apps.monitoring.services.alert_content import human_duration
from apps.monitoring.services.alerting import AlertingSummary, AlertManager
from apps.monitoring.services.health_document import get_system_health, urgent_reason
from apps.monitoring.services.health_rules import last_worker_seen
from apps.monitoring.services.responses import ResponseResult, respond
from calendar_sync import health_schedule

log = logging.getLogger(__name__)

EXIT_CODES = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.CRITICAL: 2}
# Every alert delivery of the run failed: whatever the status, nobody was told.
EXIT_ALERTS_UNDELIVERED = 4
# Cron starts jobs a little before or after the minute: without slack a check due at
# 300 s that runs at 299.8 s would wait for the next minute.
DUE_SLACK_SECONDS = 5


@dataclass
class HealthCycle:
    health: dict
    responses: ResponseResult
    alerting: AlertingSummary | None

    @property
    def exit_code(self) -> int:
        if self.alerting and self.alerting.all_failed:
            return EXIT_ALERTS_UNDELIVERED
        return EXIT_CODES[self.health["status"]]

    def as_dict(self) -> dict:
        return {**self.health, "responses": self.responses.as_dict(),
                "alerts_sent": self.alerting.lines() if self.alerting else None}


def run_health_cycle(send_alerts: bool, act: bool = False,
                     scheduled: bool = True) -> HealthCycle:
    """Measure and record; ``act`` runs the automatic responses, ``send_alerts`` delivers.

    A run that is not ``scheduled`` (an operator looking) leaves the check's schedule alone:
    otherwise it would postpone cron's next check, the one that responds and alerts. Only a run that
    counts pings the external dead man's switch, so a look by hand cannot hide a
    stopped scheduler.
    """
    counts = act or scheduled or send_alerts
    if counts:
        watchdog.ping("/start")
    try:
        health = get_system_health()
        if act or scheduled:
            responses = respond(health, act=act)
        else:
            responses = ResponseResult(health["status"], actions=[
                "observed only: no automatic response, schedule untouched (--respond acts)"])
        alerting = AlertManager().process(health) if send_alerts else None
        if alerting is not None:
            # Kept with the snapshot: the dashboard shows a run whose every delivery failed.
            health = {**health, "alert_delivery": alerting.as_record()}
        _record(health, mark_schedule=counts)
    except Exception:
        if counts:
            watchdog.ping("/fail")
        raise
    if counts:
        watchdog.ping()
    return HealthCycle(health, responses, alerting)


def is_due(now: datetime | None = None) -> tuple[bool, str]:
    """Whether cron's call should run the check now, and why."""
    now = now or timezone.now()
    try:
        current = health_schedule.state()
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


def _record(health: dict, mark_schedule: bool = True) -> None:
    if not health["metrics"]["infrastructure"]["database_healthy"]:
        return
    subs, notes = health["metrics"]["subscriptions"], health["metrics"]["notifications"]
    try:
        HealthSnapshot.objects.create(
            status=health["status"],
            total_subscriptions=subs["total_subscriptions"],
            active_subscriptions=subs["active_subscriptions"],
            failed_subscriptions=subs["failed_subscriptions"],
            success_rate=notes["success_rate_percentage"],
            pending_notifications=notes["pending_notifications"],
            document=health,
        )
        if mark_schedule:
            health_schedule.mark_run(health["status"])
            rollups.record_status(health["status"])
            rollups.prune()
    except DatabaseError:
        log.warning("could not store the health snapshot")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value}%"


def format_summary(run: HealthCycle) -> str:
    """What the command prints: status, subscriptions, success rate, alerts, recommendations."""
    health, m = run.health, run.health["metrics"]
    subs, notes, infra = m["subscriptions"], m["notifications"], m["infrastructure"]
    lines = [f"Webhook system status: {health['status'].upper()}  ({health['timestamp']})"]
    if infra["database_healthy"]:
        age = infra["worker_heartbeat_age_seconds"]
        lines += [
            f"Active subscriptions: {subs['active_subscriptions']}/"
            f"{subs['total_subscriptions']} (health {_pct(subs['health_percentage'])}, "
            f"failed {subs['failed_subscriptions']}, expiring soon {subs['expiring_soon']})",
            f"Notification success rate: {_pct(notes['success_rate_percentage'])} "
            f"({notes['total_notifications_24h']} received in 24 h, "
            f"{notes['failed_notifications_24h']} failed)",
            f"Pending notifications: {notes['pending_notifications']} "
            f"({notes['old_pending_notifications']} waiting over 5 min)",
            f"Workers alive: {infra['workers_alive']}" + (
                f" (last heartbeat {human_duration(age)} ago)" if infra["workers_alive"]
                else f" ({last_worker_seen(infra)})"),
        ]
    else:
        lines.append("Database: UNREACHABLE")
    sections = [
        ("Alerts", [f"[{a['level']}] {a['title']}: {a['message']}" for a in health["alerts"]]),
        ("Recommendations", health["recommendations"]),
        ("Automatic responses", run.responses.actions + run.responses.errors),
        ("Alerts sent", run.alerting.lines() if run.alerting else []),
    ]
    if run.alerting and run.alerting.all_failed:
        lines.append(f"ALERT DELIVERY FAILED: all {len(run.alerting.sent)} deliveries failed; "
                     "run `manage.py send_test_alert` to check the channels.")
    for title, items in sections:
        if items:
            lines.append(f"{title}:")
            lines += [f"  - {item}" for item in items]
    return "\n".join(lines)
