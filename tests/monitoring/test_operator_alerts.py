"""Alerts that say what to do: advice, where, which objects (with admin links), durations in
words, one incident per cause, a resolved message that says what recovered, test messages."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from apps.monitoring.models import HealthSnapshot, Incident
from apps.monitoring.services.alerting import AlertManager
from apps.monitoring.services.health_document import get_system_health
from tests.support.commands import command
from tests.support.factories import beat, make_calendar, make_notifications, make_subscriptions
from tests.support.sandbox import sinks

pytestmark = pytest.mark.django_db
T0 = datetime(2025, 3, 3, 13, 45, tzinfo=UTC)


def slack_texts(sandbox) -> list[str]:
    return [entry["body"]["text"] for entry in sinks(sandbox.url)["slack"]]


def test_an_alert_names_the_objects_the_advice_and_the_host(all_channels, mailoutbox,
                                                            live_worker, settings):
    settings.ALERT_ENVIRONMENT = "staging-eu"
    calendar = make_calendar(name="Team Room")
    make_subscriptions(calendar, 12, status="suspended", failure_count=10,
                       last_error="HTTP 403 from Google")
    AlertManager().process(get_system_health())
    body = next(m.body for m in mailoutbox if "failed_subscriptions" in m.body)
    assert "What to do: Run `manage.py subscription_maintenance`" in body
    assert "Affected (10 of 12):" in body
    assert body.count("- Team Room (") == 10 and "HTTP 403 from Google" in body
    assert f"{settings.WEBHOOK_BASE_URL}/admin/webhooks/webhooksubscription/" in body
    assert f"Where: staging-eu on {socket.gethostname()}" in body
    webhook = next(e["body"] for e in sinks(all_channels.url)["webhook"]
                   if e["body"]["incident_key"] == "failed_subscriptions")
    assert webhook["details"]["affected"]["total"] == 12
    assert len(webhook["details"]["affected"]["items"]) == 10


def test_a_backlog_age_is_in_minutes_not_seconds(live_worker):
    calendar = make_calendar()
    sub = make_subscriptions(calendar, 1)[0]
    make_notifications(sub, 7, status="pending",
                       received_at=timezone.now() - timedelta(seconds=2399))
    health = get_system_health()
    backlog = next(a for a in health["alerts"] if a["key"] == "notification_backlog")
    assert backlog["message"] == "Oldest waiting notification: 40 min."


def test_a_worker_that_stopped_is_stopped_at_a_time_not_never(db):
    with time_machine.travel(T0, tick=False):
        row = beat(at=T0 - timedelta(minutes=40))
        row.stopped_at = T0 - timedelta(minutes=40)
        row.save()
        health = get_system_health()
    worker = next(a for a in health["alerts"] if a["key"] == "worker_stale")
    assert worker["message"].startswith("The last worker stopped at 13:05 UTC")


def test_a_dead_worker_and_the_backlog_it_causes_are_one_incident(all_channels, mailoutbox):
    calendar = make_calendar()
    sub = make_subscriptions(calendar, 1)[0]
    beat(at=timezone.now() - timedelta(minutes=30))
    make_notifications(sub, 25, status="pending",
                       received_at=timezone.now() - timedelta(minutes=20))
    health = get_system_health()
    assert [a["key"] for a in health["alerts"]] == ["worker_stale"]
    assert "notifications waiting over 5 min" in health["alerts"][0]["message"]
    AlertManager().process(health)
    assert list(Incident.objects.values_list("key", flat=True)) == ["worker_stale"]
    assert len([e for e in sinks(all_channels.url)["pagerduty"]]) == 1


def test_a_resolved_message_says_what_recovered(all_channels, mailoutbox, settings):
    settings.ALERT_RESOLVE_AFTER_SECONDS = 0
    calendar = make_calendar()
    sub = make_subscriptions(calendar, 1)[0]
    with time_machine.travel(T0, tick=False) as clock:
        beat(at=T0 - timedelta(minutes=10))
        make_notifications(sub, 1, status="pending")
        AlertManager().process(get_system_health())
        clock.shift(timedelta(minutes=40))
        beat()
        AlertManager().process(get_system_health())
    resolved = [t for t in slack_texts(all_channels) if "[RESOLVED]" in t]
    assert len(resolved) == 1
    assert "A notification worker is heartbeating again. Resolved after 40 min" in resolved[0]
    assert "notifications waiting" not in resolved[0]


def test_send_test_alert_reaches_every_channel(all_channels, mailoutbox):
    code, out, _ = command("send_test_alert")
    assert code == 0, out
    for name in ("email", "slack", "webhook", "pagerduty"):
        assert f"[  ok] test alert via {name}: delivered" in out
    got = sinks(all_channels.url)
    assert [e["body"]["event_action"] for e in got["pagerduty"]] == ["trigger", "resolve"]
    assert "Test alert" in mailoutbox[0].subject
    assert not Incident.objects.exists()


def test_send_test_alert_fails_when_a_channel_fails(all_channels, settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.SLACK_WEBHOOK_URL = f"http://127.0.0.1:{port}/hooks/secret"
    code, out, _ = command("send_test_alert", "--channel", "slack")
    assert code == 1
    assert "[FAIL] test alert via slack: network error" in out and "secret" not in out


def test_validate_monitoring_setup_can_send_the_test(all_channels, mailoutbox):
    code, out, _ = command("validate_monitoring_setup", "--send-test")
    assert code == 0, out
    assert "[  ok] test alert via webhook: delivered" in out


def test_a_check_whose_every_delivery_failed_exits_4_and_is_recorded(all_channels, settings,
                                                                    live_worker):
    settings.WEBHOOK_ALERT_CHANNELS = ["webhook"]
    settings.EXTERNAL_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/unreachable"
    settings.ALERT_DELIVERY_MAX_ATTEMPTS = 1
    make_subscriptions(make_calendar(), 11, status="failed")
    code, out, _ = command("webhook_health_check", "--send-alerts")
    assert code == 4
    assert "ALERT DELIVERY FAILED" in out
    record = HealthSnapshot.objects.get().document["alert_delivery"]
    assert record["all_failed"] and record["failed"] == record["deliveries"] >= 1


def test_the_summary_and_the_dashboard_say_when_the_worker_stopped(client, staff_user):
    with time_machine.travel(T0, tick=False):
        row = beat(at=T0 - timedelta(minutes=40))
        row.stopped_at = T0 - timedelta(minutes=40)
        row.save()
        code, out, _ = command("webhook_health_check")
        client.force_login(staff_user)
        page = client.get("/webhooks/monitoring/").content.decode()
    assert "Workers alive: 0 (The last worker stopped at 13:05 UTC)" in out
    assert "live workers · The last worker stopped at 13:05 UTC" in page
