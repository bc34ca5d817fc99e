"""webhook_health_check, validate_monitoring_setup, validate_deployment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from apps.monitoring.models import HealthSnapshot, Incident
from calendar_sync import health_schedule
from tests.support.commands import command
from tests.support.factories import beat, make_notifications, make_subscriptions
from tests.support.sandbox import seen

pytestmark = pytest.mark.django_db
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


# --- webhook_health_check ------------------------------------------------------------------


def test_a_healthy_system_exits_0_and_prints_the_summary(live_worker, calendar):
    make_subscriptions(calendar, 3)
    code, out, _ = command("webhook_health_check")
    assert code == 0
    assert "Webhook system status: HEALTHY" in out
    assert "Active subscriptions: 3/3 (health 100.0%" in out
    snapshot = HealthSnapshot.objects.get()
    assert snapshot.status == "healthy" and snapshot.active_subscriptions == 3


def test_a_degraded_system_exits_1_and_checks_every_two_minutes(live_worker, calendar,
                                                                 settings):
    sub = make_subscriptions(calendar, 1)[0]
    make_notifications(sub, 97)
    make_notifications(sub, 3, status="failed")  # burns the freshness budget 3x: a warning
    code, out, _ = command("webhook_health_check", "--respond")
    assert code == 1
    assert "[warning] Freshness SLO burning 3x over 3d" in out
    assert "health checks every 120 s" in out
    assert (health_schedule.state()["interval_seconds"]
            == settings.HEALTH_DEGRADED_CHECK_INTERVAL_SECONDS)


def test_a_critical_system_exits_2_and_json_has_the_whole_document(live_worker, calendar):
    make_subscriptions(calendar, 11, status="failed")
    code, out, _ = command("webhook_health_check", "--respond", "--json")
    assert code == 2
    document = json.loads(out)
    assert document["status"] == "critical"
    assert document["metrics"]["subscriptions"]["failed_subscriptions"] == 11
    assert document["alerts_sent"] is None  # without --send-alerts nothing is delivered
    assert "fallback polling turned on for 1 calendars" in document["responses"]["actions"]
    assert not Incident.objects.exists()


def test_send_alerts_delivers_the_incidents(all_channels, mailoutbox, live_worker, calendar):
    make_subscriptions(calendar, 11, status="failed")
    code, out, _ = command("webhook_health_check", "--send-alerts")
    assert code == 2
    assert "opened failed_subscriptions -> pagerduty: ok" in out
    assert ("failed_subscriptions", "trigger") in seen(all_channels.url, mailoutbox)["pagerduty"]


def test_if_due_does_nothing_until_the_stored_interval_has_elapsed(live_worker, settings):
    with time_machine.travel(T0, tick=False) as clock:
        beat()
        command("webhook_health_check", "--if-due")
        clock.shift(timedelta(seconds=settings.HEALTH_CHECK_INTERVAL_SECONDS - 60))
        beat()
        code, out, _ = command("webhook_health_check", "--if-due")
        assert code == 0 and out.startswith("Not due: next check due at ")
        assert HealthSnapshot.objects.count() == 1
        clock.shift(timedelta(seconds=60))
        beat()
        command("webhook_health_check", "--if-due")
        assert HealthSnapshot.objects.count() == 2


def test_if_due_follows_the_faster_cadence_while_degraded(live_worker, calendar, settings):
    sub = make_subscriptions(calendar, 1)[0]
    make_notifications(sub, 97, received_at=T0 - timedelta(minutes=1))
    make_notifications(sub, 3, status="failed", received_at=T0 - timedelta(minutes=1))
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(10):
            beat()
            command("webhook_health_check", "--if-due")
            clock.shift(timedelta(minutes=1))
    assert HealthSnapshot.objects.filter(status="degraded").count() == 5  # minutes 0,2,4,6,8


def test_if_due_runs_at_once_when_the_worker_dies_with_notifications_waiting(live_worker,
                                                                             calendar,
                                                                             settings):
    sub = make_subscriptions(calendar, 1)[0]
    with time_machine.travel(T0, tick=False) as clock:
        beat()
        command("webhook_health_check", "--if-due")  # healthy: next check in 5 minutes
        make_notifications(sub, 1, status="pending")
        clock.shift(timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_SECONDS + 1))
        code, out, _ = command("webhook_health_check", "--if-due")
    assert code == 2
    assert "[critical] No live notification worker" in out


# --- validate_monitoring_setup -------------------------------------------------------------


def test_setup_validation_fails_without_any_alert_channel(settings):
    settings.WEBHOOK_ALERT_CHANNELS = []
    code, out, err = command("validate_monitoring_setup")
    assert code == 1
    assert "[FAIL] alert channels configured: WEBHOOK_ALERT_CHANNELS is empty" in out


def test_setup_validation_fails_when_a_channel_lacks_its_setting(settings):
    settings.WEBHOOK_ALERT_CHANNELS = ["slack", "pagerduty"]
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T/B/X"
    settings.PAGERDUTY_ROUTING_KEY = ""
    code, out, _ = command("validate_monitoring_setup")
    assert code == 1
    assert "[  ok] channel slack" in out
    assert "[FAIL] channel pagerduty: missing PAGERDUTY_ROUTING_KEY" in out


def test_setup_validation_passes_with_one_configured_channel(settings):
    settings.WEBHOOK_ALERT_CHANNELS = ["email"]
    settings.WEBHOOK_ALERT_EMAIL_RECIPIENTS = ["oncall@example.com"]
    code, out, _ = command("validate_monitoring_setup")
    assert code == 0, out
    assert "[WARN] on-call pager" in out
    assert out.rstrip().endswith("Monitoring setup OK.")


def test_setup_validation_refuses_inverted_thresholds(settings):
    settings.WEBHOOK_ALERT_CHANNELS = ["email"]
    settings.WEBHOOK_ALERT_EMAIL_RECIPIENTS = ["oncall@example.com"]
    settings.HEALTH_THRESHOLDS = {**settings.HEALTH_THRESHOLDS, "success_rate_critical": 99.0}
    code, out, _ = command("validate_monitoring_setup")
    assert code == 1
    assert "success_rate_critical >= success_rate_healthy" in out


# --- validate_deployment -------------------------------------------------------------------


@pytest.fixture
def deployed(live_server, settings):
    settings.WEBHOOK_BASE_URL = live_server.url
    settings.WEBHOOK_ALERT_CHANNELS = ["email"]
    settings.WEBHOOK_ALERT_EMAIL_RECIPIENTS = ["oncall@example.com"]
    return live_server


@pytest.mark.django_db(transaction=True)
def test_deployment_validation_passes_on_a_ready_deployment(deployed):
    beat()
    code, out, _ = command("validate_deployment")
    assert code == 0, out
    for name in ("migrations applied", "database", "cache", "health endpoint",
                 "WEBHOOK_BASE_URL https", "workers heartbeating", "alerting configured"):
        assert f"[  ok] {name}" in out


@pytest.mark.django_db(transaction=True)
def test_deployment_validation_fails_without_a_worker_and_can_wait_for_one(deployed,
                                                                           monkeypatch):
    from apps.monitoring.services import validation

    code, out, err = command("validate_deployment")
    assert code == 1
    assert "[FAIL] workers heartbeating: 0 live workers" in out
    assert "Deployment NOT ready" in err

    sleeps = []

    def worker_starts_while_we_wait(seconds: float) -> None:
        sleeps.append(seconds)
        beat()

    monkeypatch.setattr(validation.time, "sleep", worker_starts_while_we_wait)
    code, out, _ = command("validate_deployment", "--wait", "30")
    assert code == 0, out
    assert len(sleeps) == 1


def test_plain_http_is_refused_for_a_public_base_url(settings):
    from apps.monitoring.services.validation import _base_url

    settings.DEBUG = False
    settings.WEBHOOK_BASE_URL = "http://sync.example.com"
    check = _base_url()
    assert check.fails and check.detail == "http://sync.example.com: providers require https"
    settings.WEBHOOK_BASE_URL = "https://sync.example.com"
    assert _base_url().ok
