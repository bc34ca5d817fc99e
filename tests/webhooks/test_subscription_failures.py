"""Repair with backoff: each failure is counted and delays the next attempt; at the limit the
calendar's channel is suspended and the calendar polled; a success resets everything and push
covers the calendar again, leaving an operator's own polling flag alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.calendars.models import Calendar
from apps.calendars.providers.errors import Transient
from apps.calendars.providers.google import GoogleClient
from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.maintenance import run_maintenance
from apps.webhooks.services.subscriptions.renewal import create_subscription
from tests.support.factories import connect_account
from tests.support.sandbox import call_count, remote_channels, set_faults
from tests.support.subscriptions import maintenance_at, polling_pass

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(sandbox, push_nowhere, user):
    return connect_account(sandbox.url, user, "google")



def slot(calendar) -> WebhookSubscription:
    return WebhookSubscription.objects.exclude(status="stopped").get(calendar=calendar)


def test_ten_consecutive_failures_suspend_and_a_later_success_recovers(sandbox, account,
                                                                      settings):
    local_account, (calendar,), _ = account
    set_faults(sandbox.url, error_rates={"google.events.watch": {"503": 1.0}})
    limit = settings.WEBHOOK_MAX_SUBSCRIPTION_FAILURES
    base = settings.WEBHOOK_REPAIR_BACKOFF_BASE_SECONDS
    when = timezone.now()
    delays = []
    for attempt in range(1, limit + 1):
        summary = maintenance_at(sandbox.url, when)
        sub = slot(calendar)
        assert sub.failure_count == attempt
        assert "503" in sub.last_error
        assert local_account.refresh_token not in sub.last_error
        delays.append((sub.next_retry_at - when).total_seconds())
        when = sub.next_retry_at + timedelta(seconds=1)

    assert summary["suspended"] == 1 and sub.status == "suspended"
    assert polling_pass([calendar]).reasons == {"uncovered": 1}  # polled while suspended
    # Exponential: each wait doubles (within the few seconds a run takes), up to the cap.
    for n, delay in enumerate(delays[:-1], start=1):
        expected = min(base * 2 ** (n - 1), settings.WEBHOOK_REPAIR_BACKOFF_MAX_SECONDS)
        assert expected - 5 <= delay <= expected + 60
    assert delays[-1] >= settings.WEBHOOK_REPAIR_BACKOFF_MAX_SECONDS - 5
    assert call_count(sandbox.url, "google.events.watch") == limit

    # Suspended: left alone until the (long) probe time, even though maintenance runs.
    idle = maintenance_at(sandbox.url, sub.next_retry_at - timedelta(minutes=30))
    assert idle.changes == 0 and call_count(sandbox.url, "google.events.watch") == limit

    set_faults(sandbox.url, clear=True)
    recovered = maintenance_at(sandbox.url, sub.next_retry_at + timedelta(seconds=1))

    sub = slot(calendar)
    assert recovered["repaired"] == 1
    assert sub.status == "active" and sub.failure_count == 0 and sub.last_error == ""
    assert remote_channels(sandbox.url)[sub.channel_id]["live"]
    back_on_push = polling_pass([calendar])
    assert back_on_push.skipped_covered == 1 and back_on_push.polled == 0


def test_recovery_from_suspension_keeps_the_polling_an_operator_asked_for(sandbox, account,
                                                                         settings):
    _, (calendar,), _ = account
    Calendar.objects.filter(pk=calendar.pk).update(fallback_polling_enabled=True)
    settings.WEBHOOK_MAX_SUBSCRIPTION_FAILURES = 1
    set_faults(sandbox.url, fail_next={"google.events.watch": [503]})

    assert maintenance_at(sandbox.url, timezone.now())["suspended"] == 1
    retry_at = slot(calendar).next_retry_at
    assert maintenance_at(sandbox.url, retry_at + timedelta(seconds=1))["repaired"] == 1

    assert slot(calendar).status == "active"
    assert Calendar.objects.get(pk=calendar.pk).fallback_polling_enabled
    assert polling_pass([calendar]).reasons == {"uncovered": 1}


def test_a_success_resets_the_failure_count(sandbox, account):
    _, (calendar,), _ = account
    set_faults(sandbox.url, fail_next={"google.events.watch": [500, 503]})

    first = maintenance_at(sandbox.url, timezone.now())
    second = maintenance_at(sandbox.url, slot(calendar).next_retry_at + timedelta(seconds=1))
    assert slot(calendar).failure_count == 2
    third = maintenance_at(sandbox.url, slot(calendar).next_retry_at + timedelta(seconds=1))

    assert (first["failed"], second["failed"], third["repaired"]) == (1, 1, 1)
    sub = slot(calendar)
    assert sub.status == "active" and sub.failure_count == 0 and sub.next_retry_at is None


def test_a_throttled_attempt_waits_at_least_as_long_as_the_provider_asks(sandbox, account):
    _, (calendar,), _ = account
    set_faults(sandbox.url, fail_next={"google.events.watch": [429]}, retry_after_seconds=3600)
    started = timezone.now()

    assert maintenance_at(sandbox.url, started)["failed"] == 1

    sub = slot(calendar)
    assert sub.next_retry_at - started >= timedelta(seconds=3600)


def test_failures_of_one_calendar_do_not_hold_up_the_others(sandbox, account, user):
    _, (broken,), _ = account
    _, (healthy,), _ = connect_account(sandbox.url, user, "google")
    set_faults(sandbox.url, error_rates={"google.events.watch": {}},
               fail_next={"google.events.watch": [503]})

    summary = run_maintenance()

    assert summary["failed"] == 1 and summary["created"] == 1
    statuses = {slot(broken).status, slot(healthy).status}
    assert statuses == {"failed", "active"}


def test_the_channel_secret_never_reaches_the_recorded_error(account, monkeypatch):
    _, (calendar,), _ = account
    sent = {}

    def echoing_watch(self, calendar, *, token, **kwargs):
        sent["token"] = token
        raise Transient(f"upstream echoed the request: token={token}", status_code=502)

    monkeypatch.setattr(GoogleClient, "watch", echoing_watch)

    sub = create_subscription(calendar)

    assert sub.status == "failed" and sent["token"]
    assert sent["token"] not in sub.last_error and "[redacted]" in sub.last_error
    assert sub.last_error.startswith("transient (HTTP 502): ")
