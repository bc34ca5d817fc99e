"""Slack incoming webhook with Block Kit blocks (and ``text`` as the notification fallback)."""

from __future__ import annotations

from django.conf import settings

from apps.monitoring.alert_channels.base import AlertMessage, Channel, post
from apps.monitoring.models import Level

EMOJI = {Level.CRITICAL: ":red_circle:", Level.WARNING: ":large_yellow_circle:"}


class SlackChannel(Channel):
    name = "slack"
    required_settings = ("SLACK_WEBHOOK_URL",)

    def secrets(self) -> list[str]:
        return [settings.SLACK_WEBHOOK_URL]

    def payload(self, message: AlertMessage) -> dict:
        emoji = ":white_check_mark:" if message.resolved else EMOJI.get(message.level, "")
        headline = f"{emoji} {message.headline}".strip()
        fields = [
            {"type": "mrkdwn", "text": f"*Incident*\n`{message.key}`"},
            {"type": "mrkdwn", "text": f"*Event*\n{message.event}"},
            {"type": "mrkdwn", "text": f"*Opened*\n{message.opened_at:%Y-%m-%d %H:%M} UTC"},
        ]
        blocks: list[dict] = [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": message.text[:2900]}},
            {"type": "section", "fields": fields},
        ]
        if message.dashboard_url:
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"<{message.dashboard_url}|Open the dashboard>"}]})
        return {"text": f"{headline}: {message.text}"[:3000], "blocks": blocks}

    def notify(self, message: AlertMessage) -> None:
        post(self, settings.SLACK_WEBHOOK_URL, self.payload(message), ok=(200,))
