"""Alert channels, chosen by ``WEBHOOK_ALERT_CHANNELS`` (email, slack, webhook, pagerduty)."""

from __future__ import annotations

from django.conf import settings

from apps.monitoring.alert_channels.base import AlertMessage, Channel, DeliveryError
from apps.monitoring.alert_channels.email import EmailChannel
from apps.monitoring.alert_channels.pagerduty import PagerDutyChannel
from apps.monitoring.alert_channels.slack import SlackChannel
from apps.monitoring.alert_channels.webhook import WebhookChannel

CHANNEL_CLASSES: dict[str, type[Channel]] = {
    cls.name: cls for cls in (EmailChannel, SlackChannel, WebhookChannel, PagerDutyChannel)
}

__all__ = ["AlertMessage", "Channel", "DeliveryError", "CHANNEL_CLASSES",
           "configured_names", "configured_channels"]


def configured_names() -> list[str]:
    return [name.strip().lower() for name in settings.WEBHOOK_ALERT_CHANNELS if name.strip()]


def configured_channels() -> list[Channel]:
    """The configured channels that are usable (known and with their settings)."""
    channels = []
    for name in configured_names():
        cls = CHANNEL_CLASSES.get(name)
        if cls is not None and not cls().missing_settings():
            channels.append(cls())
    return channels
