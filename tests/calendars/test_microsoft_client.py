"""Contract tests: the real Microsoft Graph client against the sandbox over loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
from django.utils import timezone

from apps.calendars.models import CalendarAccount
from apps.calendars.providers.clients import get_client
from apps.calendars.providers.errors import (
    AuthRevoked,
    BadEvent,
    ClientError,
    CursorExpired,
    NotFound,
    Transient,
)
from apps.calendars.services.sync_engine import Outcome, sync_calendar

pytestmark = pytest.mark.django_db


@pytest.fixture
def outlook(connect):
    account, remote = connect("microsoft", "bob@example.com", ["Calendar", "Projects"])
    calendar = account.calendars.get(name="Calendar")
    return account, calendar, remote.access_token


def _token_endpoint(sandbox) -> str:
    return f"{sandbox.url}/common/oauth2/v2.0/token"


# --- calendars and delta --------------------------------------------------------------------

def test_it_lists_calendars_with_the_default_one_and_its_owner(outlook):
    account, _, _ = outlook
    calendars = get_client(account).list_calendars()
    assert sorted(c.name for c in calendars) == ["Calendar", "Projects"]
    default = [c for c in calendars if c.primary]
    assert [c.name for c in default] == ["Calendar"]
    assert default[0].owner_email == "bob@example.com"


def test_the_cursor_is_a_graph_delta_link(outlook, settings):
    account, calendar, _ = outlook
    cursor = get_client(account).full_sync(calendar).next_cursor
    assert cursor.startswith(f"{settings.MS_GRAPH_BASE_URL}/v1.0/")
    assert "deltatoken" in cursor.lower()


def test_a_delta_link_for_another_host_is_never_followed(outlook, api_calls):
    account, calendar, _ = outlook
    before = len(api_calls())
    with pytest.raises(CursorExpired):
        get_client(account).list_changes(
            calendar, "https://evil.example/v1.0/me/calendarView/delta?$deltatoken=x")
    assert len(api_calls()) == before


# --- typed errors ---------------------------------------------------------------------------

def test_a_503_is_transient_and_keeps_its_retry_after(outlook, sandbox_admin, api_calls):
    account, _, _ = outlook
    sandbox_admin.faults(fail_next={"graph.calendars.list": [503]}, retry_after_seconds=4)
    with pytest.raises(Transient) as caught:
        get_client(account).list_calendars()
    assert caught.value.retry_after == 4
    assert api_calls()[-1] == ("calendars.list", 503, "transient")


# --- tokens ---------------------------------------------------------------------------------

def test_a_refresh_saves_the_rotated_refresh_token_and_the_old_one_is_dead(outlook, sandbox):
    account, calendar, _ = outlook
    old_refresh = account.refresh_token
    account.token_expires_at = timezone.now()  # force a refresh before the call
    account.save()
    get_client(account).full_sync(calendar)
    stored = CalendarAccount.objects.get(pk=account.pk)
    assert stored.refresh_token and stored.refresh_token != old_refresh
    reuse = requests.post(_token_endpoint(sandbox), timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": old_refresh, "client_id": "x"})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    stored.token_expires_at = timezone.now()
    stored.save()
    get_client(stored).list_calendars()  # the saved (rotated) one still works
    assert CalendarAccount.objects.get(pk=account.pk).status == "active"


@responses.activate
def test_a_second_401_after_a_fresh_token_is_auth_revoked(outlook, settings, api_calls):
    account, calendar, _ = outlook
    settings.MS_GRAPH_BASE_URL = "https://graph.test"
    settings.MS_LOGIN_BASE_URL = "https://login.test"
    responses.get("https://graph.test/v1.0/me/calendars", status=401,
                  json={"error": {"code": "InvalidAuthenticationToken", "message": "expired"}})
    responses.post("https://login.test/common/oauth2/v2.0/token",
                   json={"access_token": "eyJ.new", "refresh_token": "M.new", "expires_in": 3600})
    with pytest.raises(AuthRevoked):
        get_client(account).list_calendars()
    assert api_calls()[-3:] == [("calendars.list", 401, "auth"), ("oauth.token", 200, ""),
                                ("calendars.list", 401, "auth_revoked")]


def test_invalid_grant_on_sync_marks_reauth_required_and_no_more_calls(outlook, sandbox_admin,
                                                                       api_calls):
    account, calendar, _ = outlook
    sandbox_admin.faults(revoke=["bob@example.com"])
    assert sync_calendar(calendar).outcome == Outcome.AUTH_REVOKED
    stored = CalendarAccount.objects.get(pk=account.pk)
    assert stored.status == "reauth_required" and stored.access_token == ""
    assert api_calls()[-1] == ("oauth.token", 400, "auth_revoked")
    before = len(api_calls())
    with pytest.raises(AuthRevoked):
        get_client(stored).full_sync(calendar)
    assert len(api_calls()) == before


def test_two_clients_refreshing_the_same_account_do_not_burn_the_rotated_token(outlook):
    account, calendar, _ = outlook
    account.token_expires_at = timezone.now()
    account.save()
    stale_copy = CalendarAccount.objects.get(pk=account.pk)  # a second worker's view
    get_client(account).full_sync(calendar)
    get_client(stale_copy).full_sync(calendar)  # adopts the first worker's fresh token
    stored = CalendarAccount.objects.get(pk=account.pk)
    assert stored.status == "active"
    assert stale_copy.access_token == account.access_token == stored.access_token


# --- subscriptions --------------------------------------------------------------------------

def test_subscribe_renew_reauthorize_and_delete(outlook, receiver, sandbox_admin, api_calls):
    account, calendar, _ = outlook
    client = get_client(account)
    expires = timezone.now() + timedelta(days=2)
    result = client.watch(calendar, channel_id="ignored", token="client-state-secret",
                          address=f"{receiver.url}/webhooks/microsoft/",
                          lifecycle_address=f"{receiver.url}/webhooks/microsoft/lifecycle/",
                          expires_at=expires)
    assert result.channel_id and result.channel_id != "ignored"
    assert abs((result.expires_at - expires).total_seconds()) < 2
    sub = sandbox_admin.state()["graph_subscriptions"][0]
    assert sub["resource"] == f"/me/calendars/{calendar.provider_calendar_id}/events"
    assert sub["changeType"] == "created,updated,deleted" and sub["clientState"] is True
    assert sub["lifecycleNotificationUrl"].endswith("/lifecycle/")
    later = timezone.now() + timedelta(days=5)
    renewed = client.renew(result.channel_id, later)
    assert abs((renewed - later).total_seconds()) < 2
    client.reauthorize(result.channel_id)
    client.stop(result.channel_id, result.resource_id)
    with pytest.raises(NotFound):
        client.stop(result.channel_id, result.resource_id)
    with pytest.raises(NotFound):
        client.renew(result.channel_id, later)
    assert [c[0] for c in api_calls()[-6:]] == [
        "subscriptions.create", "subscriptions.renew", "subscriptions.reauthorize",
        "subscriptions.delete", "subscriptions.delete", "subscriptions.renew"]
    assert api_calls()[-1][2] == "not_found"


def test_a_subscription_beyond_the_maximum_lifetime_is_a_client_error(outlook, receiver):
    account, calendar, _ = outlook
    with pytest.raises(ClientError) as caught:
        get_client(account).watch(calendar, channel_id="", token="client-state-xyz",
                                  address=receiver.url, lifecycle_address="",
                                  expires_at=timezone.now() + timedelta(days=30))
    assert caught.value.status_code == 400 and "10070 minutes" in str(caught.value)
    assert "client-state-xyz" not in str(caught.value)


# --- parse_event ----------------------------------------------------------------------------

@pytest.fixture
def parse(outlook):
    return get_client(outlook[0]).parse_event


def test_a_graph_event_is_normalised(parse):
    change = parse({"id": "AAMk1", "@odata.etag": 'W/"ck1"', "subject": "Review",
                    "location": {"displayName": "Room 4"}, "isAllDay": False,
                    "start": {"dateTime": "2030-01-07T09:00:00.0000000", "timeZone": "UTC"},
                    "end": {"dateTime": "2030-01-07T10:30:00.0000000", "timeZone": "UTC"}})
    assert (change.summary, change.location, change.etag) == ("Review", "Room 4", 'W/"ck1"')
    assert change.start == datetime(2030, 1, 7, 9, tzinfo=UTC)
    assert change.end == datetime(2030, 1, 7, 10, 30, tzinfo=UTC)
    assert change.deleted is False and change.status == "confirmed"


def test_iana_and_windows_zone_names_are_converted(parse):
    iana = parse({"id": "a", "start": {"dateTime": "2030-07-01T09:00:00",
                                       "timeZone": "Europe/Berlin"},
                  "end": {"dateTime": "2030-07-01T10:00:00",
                          "timeZone": "Pacific Standard Time"}})
    assert iana.start == datetime(2030, 7, 1, 7, tzinfo=UTC)
    assert iana.end == datetime(2030, 7, 1, 17, tzinfo=UTC)


def test_removed_items_are_deletions_and_cancelled_occurrences_are_kept(parse):
    assert parse({"id": "gone", "@removed": {"reason": "deleted"}}).deleted is True
    occurrence = parse({"id": "occ", "isCancelled": True, "type": "occurrence",
                        "seriesMasterId": "master", "isAllDay": True,
                        "start": {"dateTime": "2030-01-07T00:00:00", "timeZone": "UTC"},
                        "end": {"dateTime": "2030-01-08T00:00:00", "timeZone": "UTC"}})
    assert (occurrence.deleted, occurrence.status, occurrence.recurring_event_id,
            occurrence.all_day) == (False, "cancelled", "master", True)
    single = parse({"id": "single", "isCancelled": True, "type": "singleInstance",
                    "start": {"dateTime": "2030-01-07T00:00:00", "timeZone": "UTC"},
                    "end": {"dateTime": "2030-01-08T00:00:00", "timeZone": "UTC"}})
    assert single.deleted is True


@pytest.mark.parametrize("start", [
    {"dateTime": "2030-01-07T09:00:00", "timeZone": "Narnia Standard Time"},
    {"dateTime": "yesterday", "timeZone": "UTC"},
    None,
])
def test_an_unreadable_graph_event_is_a_bad_event(parse, start):
    with pytest.raises(BadEvent):
        parse({"id": "x", "start": start,
               "end": {"dateTime": "2030-01-07T10:00:00", "timeZone": "UTC"}})
