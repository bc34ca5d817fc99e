"""Template filters for the dashboard: durations in words, as the alerts say them."""

from __future__ import annotations

from django import template

from apps.monitoring.services.alert_content import human_duration

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """``2399`` → ``"40 min"``; ``None`` → ``"never"``."""
    return "never" if seconds is None else human_duration(seconds)
