"""The sync engine against the provider sandbox: what a user sees in the local calendar."""

from __future__ import annotations

from datetime import timedelta

import psycopg2
import pytest
from django.db import connection
from django.utils import timezone

from apps.calendars.models import CalendarAccount, Event, SkippedEvent
from apps.calendars.services import sync_engine
from apps.calendars.services.sync_engine import LOCK_NAMESPACE, Outcome, sync_calendar
from tests.support.factories import connect_account
from tests.support.sandbox import (
    Writer,
    call_count,
    out_of_step,
    sandbox_state,
    set_faults,
)

pytestmark = pytest.mark.django_db

LIST_KEY = {"google": "google.events.list", "microsoft": "graph.events.delta"}


@pytest.fixture(params=["google", "microsoft"])
def world(request, sandbox, user):
    """(calendar, writer, provider calendar id) for a fresh sandbox account."""
    _, calendars, remote = connect_account(sandbox.url, user, request.param,
                                           f"{request.param}@example.com")
    return calendars[0], Writer(sandbox.url, remote), remote.calendar_ids[0]


def test_first_sync_follows_every_page_and_keeps_the_cursor(world, sandbox, settings):
    settings.GOOGLE_EVENTS_PAGE_SIZE = 2
    settings.MS_DELTA_PAGE_SIZE = 2
    calendar, writer, cid = world
    for i in range(5):
        writer.create(cid, f"meeting {i}")

    result = sync_calendar(calendar)

    assert result.ok and result.kind == "full" and result.created == 5
    assert call_count(sandbox.url, LIST_KEY[calendar.provider]) >= 3  # 5 events, 2 per page
    assert out_of_step(sandbox.url, [calendar]) == []
    calendar.refresh_from_db()
    assert calendar.sync_cursor and calendar.last_synced_at and calendar.last_sync_error == ""


def test_incremental_sync_applies_creates_updates_and_deletes(world, sandbox):
    calendar, writer, cid = world
    keep, rename, drop = (writer.create(cid, n) for n in ("keep", "rename", "drop"))
    sync_calendar(calendar)

    writer.rename(cid, rename["id"], "renamed")
    writer.delete(cid, drop["id"])
    writer.create(cid, "new")
    result = sync_calendar(calendar)

    assert result.ok and result.kind == "incremental"
    assert (result.created, result.updated, result.deleted) == (1, 1, 1)
    assert out_of_step(sandbox.url, [calendar]) == []
    assert Event.objects.get(calendar=calendar, provider_event_id=rename["id"]).summary == "renamed"
    assert Event.objects.filter(calendar=calendar, provider_event_id=keep["id"]).exists()


def test_expired_cursor_runs_a_full_resync_that_drops_vanished_events(world, sandbox):
    calendar, writer, cid = world
    first = writer.create(cid, "first")
    sync_calendar(calendar)
    # A local event the provider no longer has (e.g. deleted while notifications were lost).
    Event.objects.create(calendar=calendar, provider_event_id="vanished", etag="x", summary="old")
    writer.delete(cid, first["id"])
    writer.create(cid, "second")
    set_faults(sandbox.url, expire_sync_tokens=[cid])

    result = sync_calendar(calendar)

    assert result.ok and result.kind == "full"
    assert not Event.objects.filter(calendar=calendar, provider_event_id="vanished").exists()
    assert out_of_step(sandbox.url, [calendar]) == []
    assert sync_calendar(calendar).kind == "incremental"  # the new cursor works


def test_a_replayed_page_changes_nothing(world, sandbox):
    calendar, writer, cid = world
    for i in range(3):
        writer.create(cid, f"e{i}")
    sync_calendar(calendar)
    calendar.refresh_from_db()
    old_cursor = calendar.sync_cursor
    writer.rename(cid, writer.create(cid, "late")["id"], "late, renamed")
    sync_calendar(calendar)
    before = dict(Event.objects.filter(calendar=calendar).values_list("provider_event_id",
                                                                      "updated_at"))

    # The provider replays everything since the old cursor (as Graph delta may).
    calendar.sync_cursor = old_cursor
    calendar.save(update_fields=["sync_cursor"])
    replay = sync_calendar(calendar)

    assert replay.ok and replay.changed == 0 and replay.unchanged >= 1
    after = dict(Event.objects.filter(calendar=calendar).values_list("provider_event_id",
                                                                     "updated_at"))
    assert after == before


def test_a_cancelled_instance_is_hidden_but_deleting_the_series_removes_it(sandbox, user):
    _, (calendar,), remote = connect_account(sandbox.url, user, "google", "series@example.com")
    writer, cid = Writer(sandbox.url, remote), remote.calendar_ids[0]
    master = writer.create(cid, "standup", recurrence=["RRULE:FREQ=DAILY;COUNT=5"])
    instance = writer.create(cid, "standup (moved)", recurringEventId=master["id"],
                             originalStartTime=master["start"])
    sync_calendar(calendar)

    writer.patch(cid, instance["id"], {"status": "cancelled"})
    sync_calendar(calendar)
    hidden = Event.objects.get(calendar=calendar, provider_event_id=instance["id"])
    assert hidden.status == Event.Status.CANCELLED
    assert Event.objects.filter(calendar=calendar, provider_event_id=master["id"]).exists()

    writer.delete(cid, master["id"])
    result = sync_calendar(calendar)
    assert result.ok and not Event.objects.filter(calendar=calendar).exists()


def test_one_bad_event_is_recorded_and_skipped_without_blocking_the_rest(sandbox, user):
    _, (calendar,), remote = connect_account(sandbox.url, user, "google", "bad@example.com")
    writer, cid = Writer(sandbox.url, remote), remote.calendar_ids[0]
    broken = writer.create(cid, "soon broken")
    sync_calendar(calendar)

    writer.patch(cid, broken["id"], {"start": {"dateTime": "2024-13-45T99:00:00Z"},
                                     "summary": "broken"})
    good = writer.create(cid, "good")
    result = sync_calendar(calendar)

    assert result.ok and result.skipped == 1 and result.created == 1
    assert Event.objects.filter(calendar=calendar, provider_event_id=good["id"]).exists()
    skipped = SkippedEvent.objects.get(calendar=calendar)
    assert skipped.provider_event_id == broken["id"] and "start" in skipped.error
    # The cursor moved on: the next sync neither re-reads nor re-records it.
    again = sync_calendar(calendar)
    assert again.ok and again.skipped == 0 and SkippedEvent.objects.count() == 1
    # Fixed at the provider: applied, and the record goes away.
    writer.patch(cid, broken["id"], {"start": good["start"], "end": good["end"]})
    assert sync_calendar(calendar).updated == 1 and not SkippedEvent.objects.exists()


def test_a_crash_between_fetch_and_commit_skips_nothing(world, sandbox, monkeypatch):
    calendar, writer, cid = world
    first = writer.create(cid, "first")
    sync_calendar(calendar)
    calendar.refresh_from_db()
    cursor = calendar.sync_cursor
    writer.rename(cid, first["id"], "first, renamed")
    writer.create(cid, "second")

    def power_cut(*args, **kwargs):
        raise RuntimeError("power cut after the event rows were written")

    # Inside the write transaction, after the events, before the cursor.
    monkeypatch.setattr(sync_engine, "_record_skipped", power_cut)
    crashed = sync_calendar(calendar)
    assert crashed.outcome == Outcome.RETRY
    calendar.refresh_from_db()
    assert calendar.sync_cursor == cursor and calendar.sync_failure_count == 1
    assert Event.objects.get(calendar=calendar).summary == "first"  # rolled back together

    monkeypatch.undo()
    result = sync_calendar(calendar)
    assert result.ok and (result.created, result.updated) == (1, 1)
    assert out_of_step(sandbox.url, [calendar]) == []
    calendar.refresh_from_db()
    assert calendar.sync_failure_count == 0


def test_throttling_backs_off_that_account_only(sandbox, user):
    account_a, (cal_a,), _ = connect_account(sandbox.url, user, "google", "throttled@example.com")
    _, (cal_b,), b = connect_account(sandbox.url, user, "google", "other@example.com")
    Writer(sandbox.url, b).create(b.calendar_ids[0], "b's event")
    set_faults(sandbox.url, retry_after_seconds=7, fail_next={"google.events.list": [429]})

    throttled = sync_calendar(cal_a)
    assert throttled.outcome == Outcome.RETRY and throttled.retry_after == 7
    account_a.refresh_from_db()
    assert account_a.backoff_until - timezone.now() > timedelta(seconds=6)

    calls = call_count(sandbox.url, "google.events.list")
    waiting = sync_calendar(cal_a)
    assert waiting.outcome == Outcome.BACKOFF and 0 < waiting.retry_after <= 7
    assert call_count(sandbox.url, "google.events.list") == calls  # nothing was sent
    other = sync_calendar(cal_b)
    assert other.ok and other.created == 1


def test_a_server_error_is_retried_later_with_a_computed_backoff(sandbox, user):
    account, (calendar,), remote = connect_account(sandbox.url, user, "microsoft",
                                                   "flaky@example.com")
    set_faults(sandbox.url, fail_next={"graph.events.delta": [500]})

    result = sync_calendar(calendar)

    assert result.outcome == Outcome.RETRY and result.retry_after is None
    account.refresh_from_db()
    calendar.refresh_from_db()
    assert account.backoff_until > timezone.now()
    assert calendar.sync_failure_count == 1 and "transient" in calendar.last_sync_error


def test_a_revoked_account_stops_syncing(sandbox, user):
    account, (calendar,), remote = connect_account(sandbox.url, user, "google",
                                                   "revoked@example.com")
    set_faults(sandbox.url, revoke=[remote.email])

    result = sync_calendar(calendar)

    assert result.outcome == Outcome.AUTH_REVOKED and not result.retryable
    account.refresh_from_db()
    assert account.status == CalendarAccount.Status.REAUTH_REQUIRED
    calls = sum(sandbox_state(sandbox.url)["counters"].values())
    assert sync_calendar(calendar).outcome == Outcome.AUTH_REVOKED
    assert sum(sandbox_state(sandbox.url)["counters"].values()) == calls


def test_a_calendar_already_syncing_in_another_process_is_reported_busy(sandbox, user):
    _, (calendar,), remote = connect_account(sandbox.url, user, "google", "busy@example.com")
    other = psycopg2.connect(**connection.get_connection_params())
    try:
        with other.cursor() as cur:  # another process holds the calendar's sync lock
            cur.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, calendar.pk])
        result = sync_calendar(calendar)
        assert result.outcome == Outcome.BUSY and result.deferred and result.retry_after
        assert call_count(sandbox.url, "google.events.list") == 0
        with other.cursor() as cur:  # its sync ends
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, calendar.pk])
        assert sync_calendar(calendar).ok
    finally:
        other.close()
