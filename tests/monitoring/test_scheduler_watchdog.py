"""Watchers that watch each other: the workers alert when no scheduler runs the health check,
the health endpoint fails meanwhile, and the health check pings a dead man's switch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
import time_machine
from django.test import Client

from apps.monitoring.models import Incident, JobRun
from apps.monitoring.services.health_cycle import run_health_cycle
from apps.monitoring.services.watchdog import STALE_KEY, watch_scheduler
from calendar_sync import health_schedule
from tests.support.sandbox import seen

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
EVERY_CHANNEL = ["email", "slack", "webhook", "pagerduty"]


def _health_check_job_ran(at: datetime) -> None:
    JobRun.objects.create(job="health_check", slot=at.replace(second=0), host="host-a",
                          started_at=at, finished_at=at + timedelta(seconds=2),
                          outcome=JobRun.Outcome.SUCCEEDED)
    health_schedule.mark_run("healthy", at)


def _workers_watch(at: datetime, workers: int = 3) -> list[bool]:
    """Several workers on several hosts watch at the same moment."""
    with time_machine.travel(at, tick=False):
        return [watch_scheduler(watching_since=T0 - timedelta(hours=1)) for _ in range(workers)]


@pytest.mark.django_db
def test_stopped_schedulers_are_alerted_to_every_channel_once_and_resolved_on_return(
        all_channels, mailoutbox):
    _health_check_job_ran(T0)
    # Every scheduler stops right after T0's run; the workers keep watching every 30 s.
    minute = 0.0
    while minute <= 10:  # watched past the limit: an alert after 5 min fails below
        _workers_watch(T0 + timedelta(minutes=minute))
        minute += 0.5
    got = seen(all_channels.url, mailoutbox)
    for channel in EVERY_CHANNEL:
        assert [e for k, e in got[channel] if k == STALE_KEY] in (["opened"], ["trigger"]), got
    incident = Incident.objects.get(key=STALE_KEY)
    assert incident.opened_at - T0 <= timedelta(minutes=5)
    assert incident.resolved_at is None

    # A scheduler comes back: its next health-check run ends the incident, told once.
    _health_check_job_ran(T0 + timedelta(minutes=9))
    _workers_watch(T0 + timedelta(minutes=9, seconds=30))
    _workers_watch(T0 + timedelta(minutes=10))
    got = seen(all_channels.url, mailoutbox)
    for channel in EVERY_CHANNEL:
        events = [e for k, e in got[channel] if k == STALE_KEY]
        assert events in (["opened", "resolved"], ["trigger", "resolve"]), (channel, events)
    assert Incident.objects.get(key=STALE_KEY).resolved_at is not None


@pytest.mark.django_db
def test_a_running_scheduler_is_never_reported_stale(all_channels, mailoutbox):
    for minute in range(12):
        _health_check_job_ran(T0 + timedelta(minutes=minute))
        assert _workers_watch(T0 + timedelta(minutes=minute, seconds=40)) == [False] * 3
    assert not Incident.objects.filter(key=STALE_KEY).exists()


@pytest.mark.django_db
def test_a_fresh_installation_is_stale_only_once_the_workers_waited_long_enough(settings):
    settings.WEBHOOK_ALERT_CHANNELS = []
    with time_machine.travel(T0 + timedelta(minutes=2), tick=False):
        assert watch_scheduler(watching_since=T0) is False
    with time_machine.travel(T0 + timedelta(minutes=4), tick=False):
        assert watch_scheduler(watching_since=T0) is True


@pytest.mark.django_db(transaction=True)  # the endpoint's checks run in their own threads
def test_the_health_endpoint_fails_while_no_health_check_completes(settings):
    settings.HEALTH_CHECK_MAX_AGE_SECONDS = 900
    client = Client()
    with time_machine.travel(T0, tick=False):
        assert client.get("/webhooks/health/").status_code == 200  # none yet: a fresh install
    _health_check_job_ran(T0)
    with time_machine.travel(T0 + timedelta(minutes=14), tick=False):
        response = client.get("/webhooks/health/")
        assert response.status_code == 200
        assert response.json()["checks"]["health_check_age"][0]["status"] == "pass"
    with time_machine.travel(T0 + timedelta(minutes=16), tick=False):
        response = client.get("/webhooks/health/")
        assert response.status_code == 503
        assert response.json()["status"] == "fail"
        assert response.json()["checks"]["health_check_age"][0]["status"] == "fail"


@pytest.mark.django_db
@responses.activate
def test_each_health_check_run_pings_the_dead_mans_switch(settings):
    settings.HEALTHCHECK_PING_URL = "https://hc-ping.example/uuid-1234"
    responses.get("https://hc-ping.example/uuid-1234/start")
    responses.get("https://hc-ping.example/uuid-1234")
    responses.get("https://hc-ping.example/uuid-1234/fail")
    run_health_cycle(send_alerts=False)
    assert [c.request.url for c in responses.calls] == [
        "https://hc-ping.example/uuid-1234/start", "https://hc-ping.example/uuid-1234"]


@pytest.mark.django_db
@responses.activate
def test_a_health_check_that_crashes_pings_fail_and_an_unreachable_switch_is_harmless(
        settings, monkeypatch):
    from apps.monitoring.services import health_cycle

    settings.HEALTHCHECK_PING_URL = "https://hc-ping.example/uuid-1234"
    responses.get("https://hc-ping.example/uuid-1234/start", body=requests.ConnectionError("down"))
    responses.get("https://hc-ping.example/uuid-1234/fail")
    monkeypatch.setattr(health_cycle, "get_system_health", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run_health_cycle(send_alerts=False)
    assert [c.request.url for c in responses.calls][-1] == "https://hc-ping.example/uuid-1234/fail"
