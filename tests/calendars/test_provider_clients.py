"""Contract tests both provider clients pass against the sandbox over loopback: paging,
incremental changes with deletions, an expired or empty cursor, rate limits, a refused token."""

from __future__ import annotations

import pytest

from apps.calendars.models import CalendarAccount
from apps.calendars.providers.clients import get_client
from apps.calendars.providers.errors import CursorExpired, RateLimited
from tests.support.sandbox import Writer

pytestmark = pytest.mark.django_db

# What differs between the providers: the account, the listing call and its page size.
PROVIDERS = {
    "google": {"email": "ann@example.com", "calendars": ["Work", "Home"],
               "listing": "events.list", "page_size": "GOOGLE_EVENTS_PAGE_SIZE",
               "fault": "google.events.list"},
    "microsoft": {"email": "bob@example.com", "calendars": ["Calendar", "Projects"],
                  "listing": "events.delta", "page_size": "MS_DELTA_PAGE_SIZE",
                  "fault": "graph.events.delta"},
}


@pytest.fixture(params=list(PROVIDERS))
def connected(request, connect, sandbox, settings):
    """(client, its first calendar, a writer acting as the user, the provider's particulars);
    listings come two events a page."""
    spec = PROVIDERS[request.param]
    account, remote = connect(request.param, spec["email"], spec["calendars"])
    setattr(settings, spec["page_size"], 2)
    calendar = account.calendars.get(provider_calendar_id=remote.calendar_ids[0])
    return get_client(account), calendar, Writer(sandbox.url, remote), spec


def _add_events(writer: Writer, calendar, count: int) -> list[dict]:
    return [writer.create(calendar.provider_calendar_id, f"Event {n}") for n in range(count)]


def test_a_full_sync_follows_every_page_and_returns_a_cursor(connected, api_calls):
    client, calendar, writer, spec = connected
    made = _add_events(writer, calendar, 5)
    page = client.full_sync(calendar)
    assert page.full is True and page.next_cursor
    assert [i["id"] for i in page.items] == [e["id"] for e in made]
    listing = spec["listing"]
    assert [c for c in api_calls() if c[0] == listing] == [(listing, 200, "")] * 3


def test_the_cursor_brings_upserts_and_deletions_since_it(connected):
    client, calendar, writer, _ = connected
    first, second = _add_events(writer, calendar, 2)
    cursor = client.full_sync(calendar).next_cursor
    writer.delete(calendar.provider_calendar_id, first["id"])
    added = _add_events(writer, calendar, 3)
    page = client.list_changes(calendar, cursor)
    assert page.full is False and page.next_cursor and page.next_cursor != cursor
    changes = {c.provider_event_id: c for c in map(client.parse_event, page.items)}
    assert changes[first["id"]].deleted is True
    assert {e["id"] for e in added} <= set(changes) and second["id"] not in changes
    assert client.list_changes(calendar, page.next_cursor).items == []


def test_an_expired_cursor_raises_cursor_expired_and_a_full_sync_recovers(
        connected, sandbox_admin, api_calls):
    client, calendar, writer, spec = connected
    _add_events(writer, calendar, 1)
    cursor = client.full_sync(calendar).next_cursor
    sandbox_admin.faults(expire_sync_tokens=True)
    with pytest.raises(CursorExpired):
        client.list_changes(calendar, cursor)
    assert api_calls()[-1] == (spec["listing"], 410, "cursor_expired")
    page = client.full_sync(calendar)
    assert len(page.items) == 1 and page.next_cursor


def test_an_empty_cursor_means_a_full_listing(connected):
    client, calendar, writer, _ = connected
    _add_events(writer, calendar, 2)
    page = client.list_changes(calendar, "")
    assert page.full is True and len(page.items) == 2


def test_a_429_is_rate_limited_with_the_retry_after_seconds(connected, sandbox_admin,
                                                            api_calls):
    client, calendar, _, spec = connected
    sandbox_admin.faults(fail_next={spec["fault"]: [429]}, retry_after_seconds=7)
    with pytest.raises(RateLimited) as caught:
        client.full_sync(calendar)
    assert caught.value.retry_after == 7
    assert api_calls()[-1] == (spec["listing"], 429, "rate_limited")


def test_a_401_refreshes_the_token_once_and_retries(connected, api_calls):
    client, calendar, _, spec = connected
    account = calendar.calendar_account
    account.access_token = "made-up"  # the API does not know it; not yet expired
    account.save()
    before = len(api_calls())
    get_client(account).full_sync(calendar)
    listing = spec["listing"]
    assert api_calls()[before:] == [(listing, 401, "auth"), ("oauth.token", 200, ""),
                                    (listing, 200, "")]
    assert CalendarAccount.objects.get(pk=account.pk).access_token != "made-up"
