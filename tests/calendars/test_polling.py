"""Fallback polling: which calendars get polled, and when."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone

from apps.calendars.models import Calendar, CalendarAccount
from apps.calendars.services import polling
from apps.calendars.services.polling import poll_due_calendars
from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions import flags
from apps.webhooks.services.subscriptions.polling_policy import push_coverage, silent_subscriptions
from tests.support.factories import connect_account, make_subscription
from tests.support.sandbox import Writer, call_count, out_of_step

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sandbox, user):
    account, calendars, remote = connect_account(sandbox.url, user, "google", "poll@example.com",
                                                 calendars=2)
    writer = Writer(sandbox.url, remote)
    for cid in remote.calendar_ids:
        writer.create(cid, "event")
    return account, calendars, remote.calendar_ids


def last_synced_a_while_ago(*calendars: Calendar) -> None:
    """Due for a poll (more than an interval ago) but far from stale."""
    interval = timedelta(seconds=django_settings.POLL_INTERVAL_SECONDS)
    Calendar.objects.filter(pk__in=[c.pk for c in calendars]).update(
        last_synced_at=timezone.now() - interval - timedelta(seconds=60))


def pushed(calendar: Calendar, **sub_fields) -> WebhookSubscription:
    """Push that looks healthy: an active, unexpired subscription."""
    last_synced_a_while_ago(calendar)
    return make_subscription(calendar, **sub_fields)[0]


def poll():
    return poll_due_calendars(is_covered=push_coverage())


def test_calendars_without_push_are_polled_and_rescheduled_with_jitter(world, sandbox, settings):
    settings.POLL_INTERVAL_SECONDS = 600
    settings.POLL_JITTER_FRACTION = 0.25
    _, calendars, cids = world

    summary = poll()

    assert (summary.polled, summary.ok, summary.reasons["uncovered"]) == (2, 2, 2)
    assert out_of_step(sandbox.url, calendars) == []
    now = timezone.now()
    for calendar in calendars:
        calendar.refresh_from_db()
        assert 450 - 5 <= (calendar.next_sync_at - now).total_seconds() <= 750
    assert poll().polled == 0  # nothing is due again before its time


def test_calendars_covered_by_healthy_push_are_left_to_push(world, sandbox):
    _, calendars, _ = world
    for calendar in calendars:
        pushed(calendar)

    summary = poll()

    assert summary.polled == 0 and summary.skipped_covered == 2
    assert call_count(sandbox.url, "google.events.list") == 0


@pytest.mark.parametrize("why", ["fallback flag", "suspended", "failed", "expired",
                                 "no subscription", "kill switch", "outside rollout"])
def test_calendars_push_does_not_cover_are_polled(world, sandbox, settings, why):
    _, (calendar, other), _ = world
    pushed(other)
    last_synced_a_while_ago(calendar)
    if why == "fallback flag":
        pushed(calendar)
        Calendar.objects.filter(pk=calendar.pk).update(fallback_polling_enabled=True)
    elif why in ("suspended", "failed"):
        pushed(calendar, status=why)
    elif why == "expired":
        pushed(calendar, expires_at=timezone.now() - timedelta(minutes=1))
    elif why == "kill switch":
        pushed(calendar)
        flags.set_runtime_switch(False)
    elif why == "outside rollout":
        pushed(calendar)
        settings.WEBHOOK_ROLLOUT_PERCENTAGE = 0

    summary = poll()

    polled = {calendar.pk} if why not in ("kill switch", "outside rollout") \
        else {calendar.pk, other.pk}
    assert summary.reasons["uncovered"] == len(polled) == summary.ok
    assert Calendar.objects.filter(pk__in=polled, events__isnull=False).distinct().count() \
        == len(polled)


def test_accounts_that_need_reconnecting_are_not_polled(world, sandbox):
    account, _, _ = world
    CalendarAccount.objects.filter(pk=account.pk).update(
        status=CalendarAccount.Status.REAUTH_REQUIRED)

    assert poll().due == 0
    assert call_count(sandbox.url, "google.events.list") == 0


def test_a_stale_calendar_is_polled_even_with_healthy_push(world, settings):
    settings.POLL_STALENESS_SECONDS = 3600
    _, (calendar, other), _ = world
    pushed(calendar)
    pushed(other)
    Calendar.objects.filter(pk=calendar.pk).update(
        last_synced_at=timezone.now() - timedelta(hours=2))

    summary = poll()

    assert summary.reasons == {"stale": 1} and summary.ok == 1
    assert Calendar.objects.get(pk=calendar.pk).events.count() == 1


def test_silent_subscriptions_are_flagged_and_their_calendars_synced(world, settings, caplog):
    settings.WEBHOOK_SILENT_SUBSCRIPTION_SECONDS = 3600
    settings.POLL_INTERVAL_SECONDS = 600
    _, (calendar, other), _ = world
    quiet = pushed(calendar, last_notification_at=timezone.now() - timedelta(hours=2))
    pushed(other, last_notification_at=timezone.now() - timedelta(minutes=5))
    Calendar.objects.filter(pk__in=[calendar.pk, other.pk]).update(
        last_synced_at=timezone.now() - timedelta(minutes=11))

    assert [s.pk for s in silent_subscriptions()] == [quiet.pk]
    out = StringIO()
    call_command("poll_calendars", "--once", stdout=out)

    assert "silent=1" in out.getvalue() and "silent_subscriptions=1" in out.getvalue()
    assert Calendar.objects.get(pk=calendar.pk).events.count() == 1
    assert Calendar.objects.get(pk=other.pk).events.count() == 0
    assert any("silent subscription" in r.message for r in caplog.records)


def test_a_calendar_claimed_by_another_poller_is_not_synced_twice(world, sandbox):
    _, calendars, _ = world
    due = list(polling.due_calendars())
    assert len(due) == 2
    # Another poller got there first with the same snapshot.
    assert polling._claim(due[0], timezone.now())

    summary = poll_due_calendars(is_covered=None)

    assert summary.polled == 1  # only the second one; the first is someone else's
    assert call_count(sandbox.url, "google.events.list") == 1


def test_polls_spread_over_the_interval(sandbox, user, settings):
    settings.POLL_INTERVAL_SECONDS = 1000
    settings.POLL_JITTER_FRACTION = 0.25
    connect_account(sandbox.url, user, "microsoft", "many@example.com", calendars=20)

    poll_due_calendars()

    offsets = sorted((c.next_sync_at - timezone.now()).total_seconds()
                     for c in Calendar.objects.all())
    assert offsets[0] >= 740 and offsets[-1] <= 1250
    assert offsets[-1] - offsets[0] > 200  # spread, not one burst an interval later
    assert len({round(o) for o in offsets}) > 15


def test_an_account_backing_off_is_polled_again_when_its_backoff_ends(world, sandbox):
    account, (calendar, other), _ = world
    until = timezone.now() + timedelta(seconds=90)
    CalendarAccount.objects.filter(pk=account.pk).update(backoff_until=until)

    summary = poll()

    assert summary.deferred == 2 and summary.ok == 0
    assert call_count(sandbox.url, "google.events.list") == 0
    calendar.refresh_from_db()
    assert abs((calendar.next_sync_at - until).total_seconds()) < 3
