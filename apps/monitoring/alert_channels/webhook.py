"""A generic JSON webhook: the whole alert as one documented JSON object."""

from __future__ import annotations

from django.conf import settings

from apps.monitoring.alert_channels.base import AlertMessage, Channel, post


class WebhookChannel(Channel):
    name = "webhook"
    required_settings = ("EXTERNAL_ALERT_WEBHOOK_URL",)

    def secrets(self) -> list[str]:
        return [settings.EXTERNAL_ALERT_WEBHOOK_URL]

    def payload(self, message: AlertMessage) -> dict:
        return {
            "source": "calendar-sync",
            "incident_key": message.key,
            "event": message.event,
            "level": message.level,
            "status": "resolved" if message.resolved else "open",
            "title": message.title,
            "message": message.text,
            "opened_at": message.opened_at.isoformat(),
            "timestamp": message.at.isoformat(),
            "dashboard_url": message.dashboard_url,
            "details": message.details,
        }

    def notify(self, message: AlertMessage) -> None:
        post(self, settings.EXTERNAL_ALERT_WEBHOOK_URL, self.payload(message))
