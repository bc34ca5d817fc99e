"""Test messages through the alert channels: proof, before an incident, that alerts arrive.

Each channel gets one message marked as a test (PagerDuty: a trigger and its resolve under a
one-off dedup key, so nobody is left with an open page). Nothing is recorded as an incident.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from apps.monitoring.alert_channels import CHANNEL_CLASSES, AlertMessage, configured_names
from apps.monitoring.models import IncidentEvent, Level
from apps.monitoring.services.alerting import build_message, deliver


@dataclass
class TrialResult:
    channel: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"[{'  ok' if self.ok else 'FAIL'}] test alert via {self.channel}" + (
            f": {self.detail}" if self.detail else "")


def _message(event: str, key: str) -> AlertMessage:
    now = timezone.now()
    return build_message(
        key, Level.WARNING, event, "Test alert from Calendar Sync",
        "This is a test message sent by `send_test_alert`: if you read it, this channel "
        "reaches you. Nothing is wrong.", now, now,
        details={"recommendation": "Nothing to do."})


def send_one(name: str) -> TrialResult:
    cls = CHANNEL_CLASSES[name]
    channel = cls()
    missing = channel.missing_settings()
    if missing:
        return TrialResult(name, False, f"missing {', '.join(missing)}")
    errors: list[str] = []

    def record(attempt: int, ok: bool, permanent: bool, error: str) -> None:
        if not ok:
            errors.append(error)

    key = f"test_alert_{timezone.now():%Y%m%d%H%M%S}"
    ok = deliver(channel, _message(IncidentEvent.OPENED, key), record)
    if ok and name == "pagerduty":
        ok = deliver(channel, _message(IncidentEvent.RESOLVED, key), record)
    return TrialResult(name, ok, "delivered" if ok else (errors[-1] if errors else "failed"))


def send_test_alerts(only: str | None = None) -> list[TrialResult]:
    """Every configured channel, or just ``only`` (which need not be configured yet)."""
    names = [only] if only else configured_names()
    return [send_one(name) for name in names]
