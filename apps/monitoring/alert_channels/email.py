"""Email through Django's configured backend to ``WEBHOOK_ALERT_EMAIL_RECIPIENTS``."""

from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import send_mail

from apps.monitoring.alert_channels.base import AlertMessage, Channel, DeliveryError


class EmailChannel(Channel):
    name = "email"
    required_settings = ("WEBHOOK_ALERT_EMAIL_RECIPIENTS",)

    def notify(self, message: AlertMessage) -> None:
        lines = [message.text, "", f"Incident: {message.key}", f"Level: {message.level}",
                 f"Opened: {message.opened_at.isoformat()}", f"Event: {message.event}"]
        if message.dashboard_url:
            lines.append(f"Dashboard: {message.dashboard_url}")
        try:
            send_mail(
                subject=f"Calendar Sync {message.headline}",
                message="\n".join(lines),
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=list(settings.WEBHOOK_ALERT_EMAIL_RECIPIENTS),
            )
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError("every recipient was refused", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            # Connection refused, timeouts, a busy relay: worth another try.
            raise DeliveryError(f"mail error: {type(exc).__name__}") from None
