"""One health check run, as cron runs it: measure, respond, alert, record."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import DatabaseError

from apps.monitoring.models import HealthSnapshot
from apps.monitoring.services import rollups, schedule
from apps.monitoring.services.alerting import AlertingSummary, AlertManager
from apps.monitoring.services.health_monitor import get_system_health
from apps.monitoring.services.responses import ResponseResult, respond

log = logging.getLogger(__name__)

EXIT_CODES = {"healthy": 0, "degraded": 1, "critical": 2}


@dataclass
class CheckRun:
    health: dict
    responses: ResponseResult
    alerting: AlertingSummary | None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.health["status"]]

    def as_dict(self) -> dict:
        return {**self.health, "responses": self.responses.as_dict(),
                "alerts_sent": self.alerting.lines() if self.alerting else None}


def run_health_check(send_alerts: bool) -> CheckRun:
    health = get_system_health()
    responses = respond(health)
    alerting = AlertManager().process(health) if send_alerts else None
    _record(health)
    return CheckRun(health, responses, alerting)


def _record(health: dict) -> None:
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
        schedule.mark_run(health["status"])
        rollups.record_status(health["status"])
        rollups.prune()
    except DatabaseError:
        log.warning("could not store the health snapshot")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value}%"


def format_summary(run: CheckRun) -> str:
    """The seed's summary: status, subscriptions, success rate, alerts, recommendations."""
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
            f"Workers alive: {infra['workers_alive']} (last heartbeat "
            f"{'never' if age is None else f'{age} s ago'})",
        ]
    else:
        lines.append("Database: UNREACHABLE")
    sections = [
        ("Alerts", [f"[{a['level']}] {a['title']}: {a['message']}" for a in health["alerts"]]),
        ("Recommendations", health["recommendations"]),
        ("Automatic responses", run.responses.actions + run.responses.errors),
        ("Alerts sent", run.alerting.lines() if run.alerting else []),
    ]
    for title, items in sections:
        if items:
            lines.append(f"{title}:")
            lines += [f"  - {item}" for item in items]
    return "\n".join(lines)
