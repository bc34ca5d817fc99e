"""The subscription manager against the sandbox: creating, ensuring, stopping, the rollout,
idempotent maintenance and one process at a time per calendar."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.calendars.models import CalendarAccount
from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.maintenance import run_maintenance
from apps.webhooks.services.subscriptions.manager import ensure_subscription, stop_subscription
from apps.webhooks.services.subscriptions.push_channels import calendar_lock
from apps.webhooks.services.subscriptions.renewal import create_subscription
from tests.support.factories import connect_account
from tests.support.sandbox import call_count, remote_channels

pytestmark = pytest.mark.django_db


@pytest.fixture
def base_url(push_nowhere):
    return push_nowhere


@pytest.fixture
def calendar(sandbox, base_url, user):
    _, calendars, _ = connect_account(sandbox.url, user, "google")
    return calendars[0]


def test_a_google_channel_is_registered_with_what_stopping_it_needs(sandbox, calendar, base_url):
    sub = create_subscription(calendar)

    assert sub.status == "active"
    remote = remote_channels(sandbox.url)[sub.channel_id]
    assert remote["live"] and remote["calendar"] == calendar.provider_calendar_id
    assert remote["address"] == f"{base_url}/webhooks/google/"
    assert sub.resource_id == remote["resourceId"]
    assert abs(sub.expires_at.timestamp() * 1000 - remote["expiration"]) < 1000
    # Google's default lifetime is a week; the row keeps the provider's figure.
    assert timedelta(days=6, hours=23) < sub.expires_at - timezone.now() <= timedelta(days=7)
    assert remote["token_set"] and sub.token_digest and sub.failure_count == 0


def test_renewal_is_planned_with_a_third_of_the_lifetime_left_plus_jitter(calendar, settings):
    subs = [create_subscription(calendar) for _ in range(6)]

    for sub in subs:
        lifetime = sub.expires_at - sub.created_at
        left = sub.expires_at - sub.renew_at
        assert lifetime / 3 - timedelta(seconds=5) <= left
        assert left <= lifetime * (1 / 3 + settings.WEBHOOK_RENEW_JITTER_FRACTION)
    assert len({sub.renew_at.replace(microsecond=0) for sub in subs}) == len(subs)


def test_ensure_creates_once_and_then_returns_the_live_channel(sandbox, calendar):
    first = ensure_subscription(calendar)
    second = ensure_subscription(calendar)

    assert first is not None and first.pk == second.pk
    assert call_count(sandbox.url, "google.events.watch") == 1


def test_ensure_leaves_a_calendar_outside_the_rollout_to_polling(sandbox, calendar, settings):
    settings.WEBHOOK_ROLLOUT_PERCENTAGE = 0

    assert ensure_subscription(calendar) is None
    assert not WebhookSubscription.objects.exists()
    assert call_count(sandbox.url, "google.events.watch") == 0


def test_stopping_stops_the_channel_at_google(sandbox, calendar):
    sub = create_subscription(calendar)

    assert stop_subscription(sub, "test")

    sub.refresh_from_db()
    assert sub.status == "stopped" and sub.stopped_at is not None
    assert remote_channels(sandbox.url)[sub.channel_id]["stopped"]


@pytest.mark.parametrize("change", ["sync_disabled", "account_disabled", "rollout_excluded"])
def test_maintenance_stops_channels_that_should_not_exist(sandbox, calendar, settings, change):
    sub = create_subscription(calendar)
    if change == "sync_disabled":
        calendar.sync_enabled = False
        calendar.save()
    elif change == "account_disabled":
        CalendarAccount.objects.filter(pk=calendar.calendar_account_id).update(status="disabled")
    else:
        settings.WEBHOOK_ROLLOUT_PERCENTAGE = 0

    summary = run_maintenance()

    sub.refresh_from_db()
    assert summary["stopped"] == 1 and sub.status == "stopped"
    # A disconnected account's token is not used any more: its channel is left to lapse.
    stopped_remotely = change != "account_disabled"
    assert remote_channels(sandbox.url)[sub.channel_id]["stopped"] is stopped_remotely
    assert CalendarAccount.objects.get(pk=calendar.calendar_account_id).status == (
        "disabled" if change == "account_disabled" else "active")


def test_a_calendar_moved_into_the_rollout_gets_its_channel_at_the_next_run(sandbox, calendar,
                                                                              settings):
    settings.WEBHOOK_ROLLOUT_PERCENTAGE = 0
    assert run_maintenance()["created"] == 0

    settings.WEBHOOK_ROLLOUT_PERCENTAGE = 100
    summary = run_maintenance()

    assert summary["created"] == 1
    sub = WebhookSubscription.objects.get(calendar=calendar)
    assert sub.status == "active" and remote_channels(sandbox.url)[sub.channel_id]["live"]


def test_a_second_maintenance_run_changes_nothing(sandbox, user, base_url):
    connect_account(sandbox.url, user, "google", calendars=3)
    first = run_maintenance()
    calls = sandbox_calls = call_count(sandbox.url, "google.events.watch")
    rows = list(WebhookSubscription.objects.values_list("pk", "status", "channel_id", "renew_at"))

    second = run_maintenance()

    assert first["created"] == 3 and calls == 3
    assert second.changes == 0 and second["errors"] == 0
    assert call_count(sandbox.url, "google.events.watch") == sandbox_calls
    assert rows == list(WebhookSubscription.objects.values_list("pk", "status", "channel_id",
                                                                "renew_at"))


def test_a_dry_run_reports_the_plan_and_changes_nothing(sandbox, user, base_url):
    connect_account(sandbox.url, user, "google", calendars=2)

    summary = run_maintenance(dry_run=True)

    assert summary["created"] == 2 and summary.lines()[0].startswith("dry run")
    assert not WebhookSubscription.objects.exists()
    assert call_count(sandbox.url, "google.events.watch") == 0


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_calendar_locked_by_another_process_is_left_alone(sandbox, calendar):
    locked, release = threading.Event(), threading.Event()

    def other_process() -> None:
        # Another thread has its own database connection, i.e. its own session.
        with calendar_lock(calendar.pk) as acquired:
            assert acquired
            locked.set()
            release.wait(10)
        connection.close()

    worker = threading.Thread(target=other_process)
    worker.start()
    assert locked.wait(10)
    try:
        summary = run_maintenance()
    finally:
        release.set()
        worker.join()

    assert summary["busy"] == 1 and summary["created"] == 0
    assert call_count(sandbox.url, "google.events.watch") == 0
    assert run_maintenance()["created"] == 1  # once released, the next run does it


def test_a_creation_left_pending_by_a_crash_is_redone(sandbox, calendar, settings):
    stale = WebhookSubscription.objects.create(
        calendar=calendar, provider="google", channel_id="crashed-before-watch",
        status="pending")
    WebhookSubscription.objects.filter(pk=stale.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.WEBHOOK_PENDING_STALE_SECONDS + 1))

    summary = run_maintenance()

    stale.refresh_from_db()
    assert summary["repaired"] == 1
    assert stale.status == "active" and stale.channel_id != "crashed-before-watch"
    assert remote_channels(sandbox.url)[stale.channel_id]["live"]
