"""Each alert channel against the sandbox sinks (email: Django's locmem outbox)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.monitoring.alert_channels import CHANNEL_CLASSES, DeliveryError, configured_channels
from apps.monitoring.alert_channels.base import AlertMessage
from apps.monitoring.alert_channels.email import EmailChannel
from apps.monitoring.alert_channels.pagerduty import PagerDutyChannel
from apps.monitoring.alert_channels.slack import SlackChannel
from apps.monitoring.alert_channels.webhook import WebhookChannel
from bench.support import free_port
from tests.support.sandbox import set_faults, sinks

OPENED = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def message(event: str = "opened", level: str = "critical") -> AlertMessage:
    return AlertMessage(key="failed_subscriptions", level=level, event=event,
                        title="12 failed subscriptions", text="12 push subscriptions failed.",
                        opened_at=OPENED, at=OPENED, details={"value": 12},
                        dashboard_url="https://sync.example.com/webhooks/monitoring/")


def test_slack_posts_blocks_with_a_text_fallback(all_channels):
    SlackChannel().notify(message())
    [received] = sinks(all_channels.url)["slack"]
    body = received["body"]
    assert body["text"].startswith(":red_circle: [CRITICAL] 12 failed subscriptions")
    header, section, fields, context = body["blocks"]
    assert header["type"] == "header"
    assert section["text"]["text"] == "12 push subscriptions failed."
    assert "`failed_subscriptions`" in fields["fields"][0]["text"]
    assert "https://sync.example.com/webhooks/monitoring/" in context["elements"][0]["text"]


def test_slack_says_when_an_incident_is_resolved(all_channels):
    SlackChannel().notify(message("resolved"))
    body = sinks(all_channels.url)["slack"][0]["body"]
    assert body["text"].startswith(":white_check_mark: [RESOLVED]")


def test_the_webhook_channel_posts_the_whole_alert_as_json(all_channels):
    WebhookChannel().notify(message())
    body = sinks(all_channels.url)["webhook"][0]["body"]
    assert body == {
        "source": "calendar-sync", "incident_key": "failed_subscriptions", "event": "opened",
        "level": "critical", "status": "open", "title": "12 failed subscriptions",
        "message": "12 push subscriptions failed.", "opened_at": OPENED.isoformat(),
        "timestamp": OPENED.isoformat(),
        "dashboard_url": "https://sync.example.com/webhooks/monitoring/",
        "details": {"value": 12},
    }


def test_pagerduty_triggers_and_resolves_with_the_incident_key(all_channels, settings):
    channel = PagerDutyChannel()
    channel.notify(message())
    channel.notify(message("resolved"))
    trigger, resolve = (r["body"] for r in sinks(all_channels.url)["pagerduty"])
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "failed_subscriptions"
    assert trigger["routing_key"] == settings.PAGERDUTY_ROUTING_KEY
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == "Calendar Sync: 12 failed subscriptions"
    assert resolve == {"routing_key": settings.PAGERDUTY_ROUTING_KEY,
                       "dedup_key": "failed_subscriptions", "event_action": "resolve"}


def test_the_pager_is_only_for_critical_incidents():
    assert PagerDutyChannel().wants("critical") and not PagerDutyChannel().wants("warning")
    assert SlackChannel().wants("warning")


def test_email_goes_to_every_recipient(all_channels, mailoutbox):
    EmailChannel().notify(message(level="warning"))
    [mail] = mailoutbox
    assert mail.to == ["oncall@example.com", "ops@example.com"]
    assert mail.subject == "Calendar Sync [WARNING] 12 failed subscriptions"
    assert "Incident: failed_subscriptions" in mail.body


def test_a_refused_payload_is_a_permanent_failure(all_channels):
    set_faults(all_channels.url, fail_next={"sinks.webhook": [400]})
    with pytest.raises(DeliveryError) as failure:
        WebhookChannel().notify(message())
    assert failure.value.permanent
    assert str(failure.value).startswith("HTTP 400")


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_throttling_are_worth_retrying(all_channels, status):
    set_faults(all_channels.url, fail_next={"sinks.pagerduty": [status]})
    with pytest.raises(DeliveryError) as failure:
        PagerDutyChannel().notify(message())
    assert not failure.value.permanent


def test_a_network_error_never_reveals_the_secret_url(settings):
    settings.SLACK_WEBHOOK_URL = f"http://127.0.0.1:{free_port()}/services/T0/B0/SECRETPATH"
    with pytest.raises(DeliveryError) as failure:
        SlackChannel().notify(message())
    assert not failure.value.permanent
    assert "SECRETPATH" not in str(failure.value)
    assert str(failure.value) == "network error: ConnectionError"


def test_a_mail_server_that_is_down_is_a_transient_failure(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.WEBHOOK_ALERT_EMAIL_RECIPIENTS = ["oncall@example.com"]
    with pytest.raises(DeliveryError) as failure:
        EmailChannel().notify(message())
    assert not failure.value.permanent


def test_only_configured_channels_with_their_settings_are_used(settings):
    settings.WEBHOOK_ALERT_CHANNELS = ["Slack", "pagerduty", "carrier-pigeon"]
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T/B/X"
    settings.PAGERDUTY_ROUTING_KEY = ""
    assert [c.name for c in configured_channels()] == ["slack"]
    assert set(CHANNEL_CLASSES) == {"email", "slack", "webhook", "pagerduty"}


@pytest.mark.parametrize("cut_at", [150, 199, 230])
def test_an_error_body_echoing_the_secret_is_redacted_wherever_it_is_cut(settings, cut_at):
    import responses

    url = "https://hooks.example.com/services/T0/B0/" + "s3cr3tT0k3n" * 4
    settings.EXTERNAL_ALERT_WEBHOOK_URL = url
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, url, status=400, body="x" * (cut_at - 40) + f"bad hook {url}")
        with pytest.raises(DeliveryError) as failure:
            WebhookChannel().notify(message())
    assert "s3cr3t" not in str(failure.value) and "T0/B0" not in str(failure.value)
