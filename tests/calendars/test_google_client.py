"""Contract tests: the real Google client against the sandbox over loopback."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import responses
from django.utils import timezone

from apps.calendars.models import Calendar, CalendarAccount
from apps.calendars.providers.clients import get_client
from apps.calendars.providers.errors import (
    AuthRevoked,
    BadEvent,
    ClientError,
    NotFound,
    RateLimited,
    Transient,
)
from apps.calendars.services.sync_engine import Outcome, sync_calendar

pytestmark = pytest.mark.django_db


@pytest.fixture
def google(connect):
    """A connected Google account with two calendars (Work is primary, its id the email)."""
    account, remote = connect("google", "ann@example.com", ["Work", "Home"])
    calendar = account.calendars.get(provider_calendar_id="ann@example.com")
    return account, calendar, remote.access_token


# --- calendars and changes ------------------------------------------------------------------

def test_it_lists_the_accounts_calendars_with_the_primary_one_marked(google):
    account, _, _ = google
    calendars = get_client(account).list_calendars()
    assert sorted(c.name for c in calendars) == ["Home", "Work"]
    primary = [c for c in calendars if c.primary]
    assert [c.id for c in primary] == ["ann@example.com"]
    assert primary[0].owner_email == "ann@example.com"


# --- typed errors ---------------------------------------------------------------------------

def test_a_403_rate_limit_exceeded_is_rate_limited_not_a_client_error(google, sandbox_admin,
                                                                      api_calls):
    account, _, _ = google
    sandbox_admin.faults(fail_next={"google.calendarList.list": [403]})
    with pytest.raises(RateLimited) as caught:
        get_client(account).list_calendars()
    assert "rateLimitExceeded" in str(caught.value)
    assert api_calls()[-1] == ("calendarList.list", 403, "rate_limited")


def test_server_errors_are_transient(google, sandbox_admin, api_calls):
    account, calendar, _ = google
    sandbox_admin.faults(fail_next={"google.events.list": [503]})
    with pytest.raises(Transient):
        get_client(account).full_sync(calendar)
    assert api_calls()[-1] == ("events.list", 503, "transient")


def test_an_unknown_calendar_is_not_found(google):
    account, _, _ = google
    missing = Calendar(calendar_account=account, provider_calendar_id="nope@example.com")
    with pytest.raises(NotFound):
        get_client(account).full_sync(missing)


def test_a_parameter_the_api_refuses_is_a_client_error(google, sandbox_admin):
    account, calendar, _ = google
    with pytest.raises(ClientError) as caught:
        get_client(account).list_changes(calendar, "not-a-real-sync-token")
    assert caught.value.status_code == 400


def test_an_unreachable_api_is_transient_and_recorded_as_network(google, settings, api_calls):
    account, calendar, _ = google
    with closed_port() as url:
        settings.GOOGLE_API_BASE_URL = url
        with pytest.raises(Transient):
            get_client(account).full_sync(calendar)
    assert api_calls()[-1] == ("events.list", None, "network")


@contextmanager
def closed_port():
    """A loopback URL with nothing listening (bound, not listening: connection refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


# --- tokens ---------------------------------------------------------------------------------

def test_an_expiring_access_token_is_refreshed_before_the_call(google, api_calls):
    account, calendar, _ = google
    old = account.access_token
    account.token_expires_at = timezone.now() + timedelta(seconds=30)
    account.save()
    before = len(api_calls())
    get_client(account).full_sync(calendar)
    fresh = CalendarAccount.objects.get(pk=account.pk)
    assert fresh.access_token != old
    assert fresh.token_expires_at > timezone.now() + timedelta(minutes=30)
    assert [c[0] for c in api_calls()[before:]] == \
        ["oauth.token", "events.list"]


def test_a_revoked_grant_raises_its_sync_marks_the_account_and_calls_stop(google, sandbox_admin,
                                                                         api_calls):
    account, calendar, _ = google
    sandbox_admin.faults(revoke=["ann@example.com"])
    client = get_client(account)
    with pytest.raises(AuthRevoked):
        client.full_sync(calendar)
    assert CalendarAccount.objects.get(pk=account.pk).status == "active"  # the caller decides
    assert sync_calendar(calendar).outcome == Outcome.AUTH_REVOKED
    stored = CalendarAccount.objects.get(pk=account.pk)
    assert stored.status == "reauth_required"
    assert "invalid_grant" in stored.last_error and stored.refresh_token == ""
    assert api_calls()[-1] == ("oauth.token", 400, "auth_revoked")
    recorded = len(api_calls())
    with pytest.raises(AuthRevoked):
        get_client(stored).list_calendars()
    with pytest.raises(AuthRevoked):
        get_client(stored).full_sync(calendar)
    assert len(api_calls()) == recorded  # no further HTTP


def test_error_messages_never_contain_the_tokens(google, sandbox_admin):
    account, calendar, _ = google
    secrets = (account.access_token, account.refresh_token)
    sandbox_admin.faults(fail_next={"google.events.list": [429]})
    with pytest.raises(RateLimited) as limited:
        get_client(account).full_sync(calendar)
    sandbox_admin.faults(revoke=["ann@example.com"])
    account.access_token = "ya29.unknown"
    with pytest.raises(AuthRevoked) as revoked:
        get_client(account).full_sync(calendar)
    for error in (limited.value, revoked.value):
        assert not any(s in str(error) for s in secrets + ("ya29.unknown",))


# --- watch / stop ---------------------------------------------------------------------------

def test_watch_creates_a_channel_and_stop_ends_it(google, receiver, sandbox_admin, api_calls):
    account, calendar, _ = google
    expires = timezone.now() + timedelta(days=2)
    client = get_client(account)
    result = client.watch(calendar, channel_id="chan-1", token="t0ken",
                          address=f"{receiver.url}/webhooks/google/", lifecycle_address="",
                          expires_at=expires)
    assert result.channel_id == "chan-1" and result.resource_id
    assert "/calendars/ann%40example.com/events" in result.resource_uri \
        or "/calendars/ann@example.com/events" in result.resource_uri
    assert abs((result.expires_at - expires).total_seconds()) < 5
    channel = sandbox_admin.state()["google_channels"][0]
    assert channel["live"] and channel["resourceId"] == result.resource_id
    client.stop("chan-1", result.resource_id)
    assert sandbox_admin.state()["google_channels"][0]["stopped"] is True
    with pytest.raises(NotFound):
        client.stop("chan-1", result.resource_id)
    assert [c[0] for c in api_calls()[-3:]] == ["events.watch", "channels.stop", "channels.stop"]
    assert api_calls()[-1][2] == "not_found"
    with pytest.raises(NotImplementedError):
        client.renew("chan-1", expires)


def test_stop_with_the_calendar_id_instead_of_the_resource_id_is_not_found(google, receiver):
    account, calendar, _ = google
    client = get_client(account)
    client.watch(calendar, channel_id="chan-2", token="t", address=receiver.url,
                 lifecycle_address="", expires_at=timezone.now() + timedelta(hours=1))
    with pytest.raises(NotFound):
        client.stop("chan-2", calendar.provider_calendar_id)


# --- parse_event ----------------------------------------------------------------------------

@pytest.fixture
def parse(google):
    return get_client(google[0]).parse_event


def test_a_timed_event_keeps_its_offset_as_an_aware_datetime(parse):
    change = parse({"id": "e1", "etag": '"1"', "status": "confirmed", "summary": "Lunch",
                    "location": "Cafe", "start": {"dateTime": "2030-01-07T12:00:00+01:00"},
                    "end": {"dateTime": "2030-01-07T13:00:00Z"}})
    assert change.start == datetime(2030, 1, 7, 11, 0, tzinfo=UTC)
    assert change.end == datetime(2030, 1, 7, 13, 0, tzinfo=UTC)
    assert (change.summary, change.location, change.etag, change.deleted) == \
        ("Lunch", "Cafe", '"1"', False)


def test_an_all_day_event_is_marked_all_day(parse):
    change = parse({"id": "e2", "start": {"date": "2030-01-07"}, "end": {"date": "2030-01-08"}})
    assert change.all_day is True
    assert change.start == datetime(2030, 1, 7, tzinfo=UTC)


def test_a_cancelled_instance_is_kept_but_a_cancelled_event_is_a_deletion(parse):
    instance = parse({"id": "m_20300107T090000Z", "status": "cancelled", "recurringEventId": "m",
                      "originalStartTime": {"dateTime": "2030-01-07T09:00:00Z"}})
    assert (instance.deleted, instance.status, instance.recurring_event_id) == \
        (False, "cancelled", "m")
    assert instance.start == datetime(2030, 1, 7, 9, tzinfo=UTC)
    deleted = parse({"id": "gone", "status": "cancelled"})
    assert deleted.deleted is True


@pytest.mark.parametrize("item", [
    {"id": "x", "start": {"dateTime": "not a date"}, "end": {"dateTime": "2030-01-07T09:00:00Z"}},
    {"id": "x", "start": {}, "end": {}},
    {"id": "x", "start": {"dateTime": "2030-01-07T09:00:00", "timeZone": "Mars/Olympus"},
     "end": {"date": "2030-01-08"}},
    {"summary": "no id"},
])
def test_an_unreadable_event_is_a_bad_event(parse, item):
    with pytest.raises(BadEvent):
        parse(item)


def test_a_local_time_is_read_in_the_events_zone(parse):
    change = parse({"id": "e3", "start": {"dateTime": "2030-07-01T09:00:00",
                                          "timeZone": "America/New_York"},
                    "end": {"dateTime": "2030-07-01T10:00:00Z"}})
    assert change.start == datetime(2030, 7, 1, 13, tzinfo=UTC)


@responses.activate
def test_a_410_deleted_on_an_event_is_not_found_and_a_retry_after_date_is_read(google, settings):
    account, calendar, _ = google
    account.token_expires_at = timezone.now() + timedelta(hours=1)
    settings.GOOGLE_API_BASE_URL = "https://google.test"
    url = "https://google.test/calendar/v3/channels/stop"
    responses.post(url, status=410, json={"error": {"code": 410, "message": "Resource deleted",
                                                    "errors": [{"reason": "deleted"}]}})
    with pytest.raises(NotFound):
        get_client(account).stop("c", "r")
    when = (datetime.now(UTC) + timedelta(seconds=120)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    responses.replace(responses.POST, url, status=503, headers={"Retry-After": when})
    with pytest.raises(Transient) as caught:
        get_client(account).stop("c", "r")
    assert 100 < caught.value.retry_after <= 120
