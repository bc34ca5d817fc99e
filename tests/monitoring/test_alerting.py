"""Incidents: opened once, escalated, repeated at most every interval, resolved once clear for
ALERT_RESOLVE_AFTER_SECONDS (no storm from a flapping figure); deliveries recorded; transient
failures retried; one failing channel never stops the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from apps.monitoring.models import AlertDelivery, Incident
from apps.monitoring.services import offline_incidents
from apps.monitoring.services.alerting import AlertManager, RowStore
from tests.support.outages import database_unreachable
from tests.support.sandbox import seen, set_faults

pytestmark = pytest.mark.django_db
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
ALL = ("email", "slack", "webhook", "pagerduty")


def alert(key: str = "failed_subscriptions", level: str = "critical") -> dict:
    return {"key": key, "level": level, "title": f"{key} is {level}",
            "message": f"{key} needs attention.", "value": 12, "affects_status": True}


def doc(*alerts: dict, database: bool = True) -> dict:
    status = "critical" if any(a["level"] == "critical" for a in alerts) else "healthy"
    return {"status": status, "alerts": list(alerts),
            "metrics": {"infrastructure": {"database_healthy": database}}}


def run(health: dict):
    return AlertManager().process(health)


@pytest.fixture
def resolve_at_once(settings):
    """No resolve delay: for tests about what a resolution sends, not when."""
    settings.ALERT_RESOLVE_AFTER_SECONDS = 0


def test_an_incident_is_delivered_to_every_channel_once_when_it_opens(all_channels,
                                                                       mailoutbox):
    run(doc(alert()))
    run(doc(alert()))
    got = seen(all_channels.url, mailoutbox)
    for channel in ("email", "slack", "webhook"):
        assert got[channel] == [("failed_subscriptions", "opened")]
    assert got["pagerduty"] == [("failed_subscriptions", "trigger")]
    incident = Incident.objects.get()
    assert incident.is_open and incident.notified_level == "critical"
    assert sorted(incident.deliveries.values_list("channel", "event", "succeeded")) == sorted(
        (c, "opened", True) for c in ALL)


def test_a_warning_does_not_page_and_a_rise_to_critical_does(all_channels, mailoutbox):
    run(doc(alert(level="warning")))
    assert seen(all_channels.url, mailoutbox)["pagerduty"] == []
    run(doc(alert(level="critical")))
    run(doc(alert(level="warning")))   # falls back: nothing to say
    run(doc(alert(level="critical")))  # rises again to a level already announced: quiet
    got = seen(all_channels.url, mailoutbox)
    assert got["slack"] == [("failed_subscriptions", "opened"),
                            ("failed_subscriptions", "escalated")]
    assert got["pagerduty"] == [("failed_subscriptions", "trigger")]
    assert Incident.objects.count() == 1


def test_an_open_incident_is_repeated_no_more_often_than_the_interval(all_channels,
                                                                     mailoutbox, settings):
    settings.ALERT_REPEAT_INTERVAL_SECONDS = 3600
    with time_machine.travel(T0, tick=False) as clock:
        run(doc(alert()))
        clock.shift(timedelta(minutes=59, seconds=59))
        run(doc(alert()))
        assert len(seen(all_channels.url, mailoutbox)["webhook"]) == 1
        clock.shift(timedelta(seconds=1))
        run(doc(alert()))
        run(doc(alert()))
        clock.shift(timedelta(minutes=30))
        run(doc(alert()))
    got = seen(all_channels.url, mailoutbox)
    assert got["webhook"] == [("failed_subscriptions", "opened"),
                              ("failed_subscriptions", "repeated")]
    assert len(got["pagerduty"]) == 2  # the same dedup_key: PagerDuty updates, not re-pages


def test_a_cleared_condition_is_resolved_with_a_message_to_every_channel_told(
        all_channels, mailoutbox, resolve_at_once):
    run(doc(alert(), alert("cache_down", "warning")))
    run(doc())
    run(doc())
    got = seen(all_channels.url, mailoutbox)
    assert got["pagerduty"] == [("failed_subscriptions", "trigger"),
                                ("failed_subscriptions", "resolve")]  # never told of cache_down
    assert sorted(got["webhook"]) == sorted([
        ("failed_subscriptions", "opened"), ("cache_down", "opened"),
        ("failed_subscriptions", "resolved"), ("cache_down", "resolved")])
    assert not Incident.objects.filter(resolved_at__isnull=True).exists()
    assert mailoutbox[-1].subject.startswith("Calendar Sync [RESOLVED]")


def test_a_condition_that_returns_after_resolving_opens_a_new_incident(all_channels,
                                                                       mailoutbox,
                                                                       resolve_at_once):
    run(doc(alert()))
    run(doc())
    run(doc(alert()))
    assert [e for _, e in seen(all_channels.url, mailoutbox)["slack"]] == [
        "opened", "resolved", "opened"]
    assert Incident.objects.count() == 2


def test_one_failing_channel_does_not_stop_the_others(all_channels, mailoutbox):
    set_faults(all_channels.url, fail_next={"sinks.slack": [400]})
    summary = run(doc(alert()))
    got = seen(all_channels.url, mailoutbox)
    assert got["slack"] == []
    assert len(got["email"]) == len(got["webhook"]) == len(got["pagerduty"]) == 1
    failed = AlertDelivery.objects.get(channel="slack")
    assert not failed.succeeded and failed.permanent_failure and failed.attempt == 1
    assert failed.error.startswith("HTTP 400")
    assert "opened failed_subscriptions -> slack: FAILED" in summary.lines()


def test_a_transient_failure_is_retried_and_every_attempt_recorded(all_channels, mailoutbox):
    set_faults(all_channels.url, fail_next={"sinks.webhook": [503]})
    run(doc(alert()))
    assert len(seen(all_channels.url, mailoutbox)["webhook"]) == 1
    attempts = AlertDelivery.objects.filter(channel="webhook").order_by("attempt")
    assert [(a.attempt, a.succeeded, a.error[:8]) for a in attempts] == [
        (1, False, "HTTP 503"), (2, True, "")]


def test_a_channel_that_kept_failing_gets_the_message_on_the_next_check(all_channels,
                                                                        mailoutbox, settings):
    settings.ALERT_DELIVERY_MAX_ATTEMPTS = 2
    set_faults(all_channels.url, fail_next={"sinks.slack": [500, 500]})
    run(doc(alert()))
    assert seen(all_channels.url, mailoutbox)["slack"] == []
    run(doc(alert()))
    run(doc(alert()))
    got = seen(all_channels.url, mailoutbox)
    assert got["slack"] == [("failed_subscriptions", "opened")]
    assert len(got["webhook"]) == 1  # the others are not told twice
    assert AlertDelivery.objects.filter(channel="slack").count() == 3


def test_a_channel_that_crashes_is_recorded_and_the_others_still_deliver(all_channels,
                                                                         mailoutbox, settings):
    settings.EMAIL_BACKEND = "no.such.EmailBackend"
    run(doc(alert()))
    crashed = AlertDelivery.objects.get(channel="email")
    assert not crashed.succeeded and crashed.permanent_failure
    assert len(seen(all_channels.url, mailoutbox)["slack"]) == 1


def test_a_crash_quoting_the_slack_url_leaks_it_neither_to_the_log_nor_the_record(
        all_channels, mailoutbox, settings, monkeypatch, caplog):
    from calendar_sync import http

    def broken_post(url, payload, **kwargs):
        raise ValueError(f"cannot post to {url}")

    monkeypatch.setattr(http, "post_json", broken_post)
    run(doc(alert()))
    slack = AlertDelivery.objects.get(channel="slack")
    assert not slack.succeeded and "ValueError" in slack.error
    secret_path = "T000/B000/XXXSECRET"
    assert secret_path not in slack.error and secret_path not in caplog.text
    assert "alert channel slack crashed" in caplog.text


def test_overlapping_checks_do_not_both_repeat_an_incident(all_channels, mailoutbox, settings):
    settings.ALERT_REPEAT_INTERVAL_SECONDS = 60
    with time_machine.travel(T0, tick=False) as clock:
        run(doc(alert()))
        stale = Incident.objects.get()  # what a second, slower check loaded
        clock.shift(timedelta(minutes=2))
        run(doc(alert()))
        AlertManager().apply(RowStore(), stale, alert())
    assert [e for _, e in seen(all_channels.url, mailoutbox)["webhook"]] == ["opened", "repeated"]


def test_alerts_still_go_out_once_while_the_database_is_down(all_channels, mailoutbox,
                                                            settings):
    down = doc(alert("database_down"), database=False)
    with database_unreachable():
        run(down)
        run(down)
    got = seen(all_channels.url, mailoutbox)
    assert {c: len(v) for c, v in got.items()} == dict.fromkeys(ALL, 1)
    assert offline_incidents.load()[0]["key"] == "database_down"

    with time_machine.travel(T0, tick=False) as clock:
        run(doc())  # the database is back: clearing, nothing sent yet
        assert Incident.objects.get(key="database_down").is_open
        assert len(seen(all_channels.url, mailoutbox)["pagerduty"]) == 1
        clock.shift(timedelta(seconds=settings.ALERT_RESOLVE_AFTER_SECONDS))
        run(doc())
    incident = Incident.objects.get(key="database_down")
    assert incident.resolved_at is not None
    assert incident.deliveries.filter(event="opened", succeeded=True).count() == 4
    assert incident.deliveries.filter(event="resolved", succeeded=True).count() == 4
    assert seen(all_channels.url, mailoutbox)["pagerduty"][-1] == ("database_down", "resolve")
    assert offline_incidents.load() == []


def test_secrets_never_reach_a_recorded_error(all_channels, mailoutbox, settings):
    settings.SLACK_WEBHOOK_URL = "http://127.0.0.1:1/services/T0/B0/SECRETPATH"
    settings.ALERT_DELIVERY_MAX_ATTEMPTS = 1
    set_faults(all_channels.url, fail_next={"sinks.pagerduty": [400]})
    run(doc(alert()))
    errors = " ".join(AlertDelivery.objects.values_list("error", flat=True))
    assert "SECRETPATH" not in errors
    assert settings.PAGERDUTY_ROUTING_KEY not in errors


# --- damping against flapping ---------------------------------------------------------------

def events(all_channels, mailoutbox, key: str = "failed_subscriptions") -> dict[str, list]:
    return {c: [e for k, e in got if k == key]
            for c, got in seen(all_channels.url, mailoutbox).items()}


def test_a_flapping_condition_is_opened_once_and_resolved_once_after_staying_clear(
        all_channels, mailoutbox, settings):
    settings.ALERT_RESOLVE_AFTER_SECONDS = 600
    with time_machine.travel(T0, tick=False) as clock:
        for check in range(10):  # 94.9 % / 95.1 %: bad, good, bad, ... one check a minute
            run(doc(alert(level="warning")) if check % 2 == 0 else doc())
            clock.shift(timedelta(minutes=1))
        assert events(all_channels, mailoutbox) == {
            "email": ["opened"], "slack": ["opened"], "webhook": ["opened"], "pagerduty": []}
        clear_since = Incident.objects.get().clear_since
        assert clear_since == T0 + timedelta(minutes=9)  # the last good check

        while timezone.now() - clear_since < timedelta(seconds=600):
            run(doc())
            assert Incident.objects.get().is_open
            clock.shift(timedelta(minutes=1))
        assert events(all_channels, mailoutbox)["webhook"] == ["opened"]
        run(doc())  # clear for 10 minutes now
        run(doc())
    assert events(all_channels, mailoutbox) == {
        "email": ["opened", "resolved"], "slack": ["opened", "resolved"],
        "webhook": ["opened", "resolved"], "pagerduty": []}
    incident = Incident.objects.get()
    assert incident.resolved_at == clear_since + timedelta(seconds=600)
    assert "clear for the last 10 min" in mailoutbox[-1].body


def test_a_condition_back_while_clearing_still_escalates_and_repeats(all_channels, mailoutbox,
                                                                     settings):
    settings.ALERT_RESOLVE_AFTER_SECONDS = 600
    settings.ALERT_REPEAT_INTERVAL_SECONDS = 300
    with time_machine.travel(T0, tick=False) as clock:
        run(doc(alert(level="warning")))
        clock.shift(timedelta(minutes=2))
        run(doc())
        clock.shift(timedelta(minutes=1))
        run(doc(alert(level="critical")))  # back, and worse: escalated, pages on-call
        assert Incident.objects.get().clear_since is None
        clock.shift(timedelta(minutes=1))
        run(doc())
        clock.shift(timedelta(minutes=1))
        run(doc(alert(level="critical")))  # 2 min after the escalation: quiet
        clock.shift(timedelta(minutes=3))
        run(doc(alert(level="critical")))  # 5 min after it: repeated
    assert events(all_channels, mailoutbox)["slack"] == ["opened", "escalated", "repeated"]
    assert events(all_channels, mailoutbox)["pagerduty"] == ["trigger", "trigger"]
    assert Incident.objects.count() == 1


def test_a_database_that_drops_again_while_clearing_continues_the_same_incident(
        all_channels, mailoutbox, settings):
    settings.ALERT_RESOLVE_AFTER_SECONDS = 600
    down = doc(alert("database_down"), database=False)
    with time_machine.travel(T0, tick=False) as clock:
        for check in range(8):  # down, up, down, ... one check a minute
            if check % 2 == 0:
                with database_unreachable():
                    run(down)
            else:
                run(doc())
            clock.shift(timedelta(minutes=1))
        assert events(all_channels, mailoutbox, "database_down") == {
            "email": ["opened"], "slack": ["opened"], "webhook": ["opened"],
            "pagerduty": ["trigger"]}
        for _ in range(11):
            run(doc())
            clock.shift(timedelta(minutes=1))
    got = events(all_channels, mailoutbox, "database_down")
    assert got["webhook"] == ["opened", "resolved"] and got["pagerduty"] == ["trigger", "resolve"]
    incident = Incident.objects.get(key="database_down")
    assert not incident.is_open
    assert incident.deliveries.filter(event="opened", succeeded=True).count() == 4
    assert offline_incidents.load() == []


def test_a_condition_cleared_while_the_database_is_down_waits_for_the_delay_too(
        all_channels, mailoutbox, settings):
    settings.ALERT_RESOLVE_AFTER_SECONDS = 300
    with time_machine.travel(T0, tick=False) as clock, database_unreachable():
        run(doc(alert("database_down"), alert("cache_down", "warning"), database=False))
        for _ in range(5):  # cache back from T0 + 1 min: clearing until T0 + 6 min
            clock.shift(timedelta(minutes=1))
            run(doc(alert("database_down"), database=False))
            assert events(all_channels, mailoutbox, "cache_down")["slack"] == ["opened"]
        clock.shift(timedelta(minutes=1))
        run(doc(alert("database_down"), database=False))
    assert events(all_channels, mailoutbox, "cache_down")["slack"] == ["opened", "resolved"]
    assert events(all_channels, mailoutbox, "database_down")["slack"] == ["opened"]
