"""Template filters for the dashboard: durations in words, as the alerts say them."""

from __future__ import annotations

from django import template

from apps.monitoring.services.alert_content import human_duration
from apps.monitoring.services.health_rules import last_worker_seen

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """``2399`` → ``"40 min"``; ``None`` → ``"never"``."""
    return "never" if seconds is None else human_duration(seconds)


@register.filter
def worker_seen(infrastructure: dict) -> str:
    """"last heartbeat 40 min ago" / "stopped at 13:05 UTC" for the workers tile."""
    if "worker_heartbeat_age_seconds" not in infrastructure:
        return "unknown"
    if infrastructure.get("workers_alive"):
        return f"heartbeat {duration(infrastructure['worker_heartbeat_age_seconds'])} ago"
    return last_worker_seen(infrastructure)
