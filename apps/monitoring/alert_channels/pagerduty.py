"""PagerDuty Events API v2: ``trigger`` while an incident is open, ``resolve`` when it clears.

The ``dedup_key`` is the incident key, so repeats and escalations update the same PagerDuty
incident instead of paging again, and the resolve closes it.
"""

from __future__ import annotations

from django.conf import settings

from apps.monitoring.alert_channels.base import AlertMessage, Channel, post
from apps.monitoring.models import Level


class PagerDutyChannel(Channel):
    name = "pagerduty"
    min_level = Level.CRITICAL  # the on-call pager: only for what needs a human now
    required_settings = ("PAGERDUTY_ROUTING_KEY", "PAGERDUTY_EVENTS_URL")

    def secrets(self) -> list[str]:
        return [settings.PAGERDUTY_ROUTING_KEY]

    def payload(self, message: AlertMessage) -> dict:
        event = {"routing_key": settings.PAGERDUTY_ROUTING_KEY, "dedup_key": message.key}
        if message.resolved:
            return {**event, "event_action": "resolve"}
        return {
            **event,
            "event_action": "trigger",
            "payload": {
                "summary": f"Calendar Sync: {message.title}"[:1024],
                "source": settings.WEBHOOK_BASE_URL,
                "severity": message.level,
                "component": "webhooks",
                "class": message.key,
                "timestamp": message.at.isoformat(),
                "custom_details": {"message": message.text, "event": message.event,
                                   **message.details},
            },
            **({"links": [{"href": message.dashboard_url, "text": "Dashboard"}]}
               if message.dashboard_url else {}),
        }

    def notify(self, message: AlertMessage) -> None:
        post(self, settings.PAGERDUTY_EVENTS_URL, self.payload(message), ok=(200, 202))
