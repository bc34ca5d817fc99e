"""Google Calendar v3 events: CRUD, full and incremental lists, tokens and their refusals."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.sandbox_http import Api

CAL = "/calendar/v3/calendars/alice%40example.com"
EVENTS = CAL + "/events"


def _event(summary: str = "Standup", day: int = 5, **extra: Any) -> dict[str, Any]:
    return {"summary": summary,
            "start": {"dateTime": f"2024-01-{day:02d}T10:00:00Z", "timeZone": "UTC"},
            "end": {"dateTime": f"2024-01-{day:02d}T10:30:00Z", "timeZone": "UTC"}, **extra}


def _insert(api: Api, **kw: Any) -> dict[str, Any]:
    resp = api.post(EVENTS, json=_event(**kw))
    assert resp.status_code == 200, resp.text
    return resp.json()


def _list_all(api: Api, **params: Any) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """Follow nextPageToken; returns the pages' items and the last page."""
    pages = []
    while True:
        body = api.get(EVENTS, params=params).json()
        pages.append(body["items"])
        if "nextPageToken" not in body:
            return pages, body
        assert "nextSyncToken" not in body
        params = {**params, "pageToken": body["nextPageToken"]}


def test_insert_patch_delete_round_trip(google) -> None:
    api, _ = google
    ev = _insert(api)
    assert ev["status"] == "confirmed"
    assert ev["etag"].startswith('"') and ev["etag"].endswith('"')
    assert ev["updated"].endswith("Z") and ev["iCalUID"] and ev["kind"] == "calendar#event"
    patched = api.patch(f"{EVENTS}/{ev['id']}", json={"summary": "Moved"})
    assert patched.status_code == 200
    assert patched.json()["summary"] == "Moved"
    assert patched.json()["etag"] != ev["etag"]
    assert patched.json()["start"] == ev["start"]
    assert api.delete(f"{EVENTS}/{ev['id']}").status_code == 204
    again = api.delete(f"{EVENTS}/{ev['id']}")
    assert again.status_code == 410
    assert again.json()["error"]["errors"][0]["reason"] == "deleted"
    assert api.delete(f"{EVENTS}/nosuchevent").status_code == 404


def test_insert_requires_start_and_end(google) -> None:
    api, _ = google
    resp = api.post(EVENTS, json={"summary": "No times"})
    assert resp.status_code == 400
    assert resp.json()["error"]["errors"][0]["reason"] == "required"


def test_calendar_list_and_primary_alias(google, admin: Api) -> None:
    api, acct = google
    items = api.get("/calendar/v3/users/me/calendarList").json()["items"]
    assert [i["id"] for i in items] == [c["id"] for c in acct["calendars"]]
    assert items[0]["primary"] is True and "primary" not in items[1]
    _insert(api)
    assert len(api.get("/calendar/v3/calendars/primary/events").json()["items"]) == 1
    other = admin.account("google", "zed@example.com")["calendars"][0]["id"]
    resp = api.get(f"/calendar/v3/calendars/{quote(other)}/events")
    assert resp.status_code == 404


def test_full_list_paginates_with_the_sync_token_only_on_the_last_page(google) -> None:
    api, _ = google
    ids = [_insert(api, summary=f"e{i}")["id"] for i in range(5)]
    pages, last = _list_all(api, maxResults=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e["id"] for p in pages for e in p] == ids
    assert "nextSyncToken" in last and "nextPageToken" not in last


def test_incremental_sync_returns_changes_including_deletions(google) -> None:
    api, _ = google
    a, b, c = (_insert(api, summary=s) for s in "abc")
    _, last = _list_all(api)
    token = last["nextSyncToken"]
    api.patch(f"{EVENTS}/{a['id']}", json={"summary": "A"})
    api.delete(f"{EVENTS}/{b['id']}")
    d = _insert(api, summary="d")
    pages, last = _list_all(api, syncToken=token, maxResults=1)
    assert [len(p) for p in pages] == [1, 1, 1]
    items = {e["id"]: e for p in pages for e in p}
    assert set(items) == {a["id"], b["id"], d["id"]}
    assert items[b["id"]]["status"] == "cancelled"
    assert items[a["id"]]["summary"] == "A"
    assert c["id"] not in items
    # Nothing changed since: an empty page with a fresh token.
    empty = api.get(EVENTS, params={"syncToken": last["nextSyncToken"]}).json()
    assert empty["items"] == [] and "nextSyncToken" in empty


def test_full_list_hides_cancelled_events_unless_show_deleted(google) -> None:
    api, _ = google
    keep, gone = _insert(api), _insert(api)
    api.delete(f"{EVENTS}/{gone['id']}")
    assert [e["id"] for e in api.get(EVENTS).json()["items"]] == [keep["id"]]
    shown = api.get(EVENTS, params={"showDeleted": "true"}).json()["items"]
    assert {e["id"]: e["status"] for e in shown} == {keep["id"]: "confirmed",
                                                       gone["id"]: "cancelled"}


@pytest.mark.parametrize("param", ["iCalUID", "orderBy", "privateExtendedProperty", "q",
                                   "sharedExtendedProperty", "timeMin", "timeMax",
                                   "updatedMin"])
def test_it_refuses_parameters_not_allowed_with_a_sync_token(google, param: str) -> None:
    api, _ = google
    token = api.get(EVENTS).json()["nextSyncToken"]
    value = "2024-01-01T00:00:00Z" if param in ("timeMin", "timeMax", "updatedMin") else "x"
    resp = api.get(EVENTS, params={"syncToken": token, param: value})
    assert resp.status_code == 400
    assert resp.json()["error"]["errors"][0]["reason"] == "invalid"


def test_it_refuses_show_deleted_false_with_a_sync_token(google) -> None:
    api, _ = google
    token = api.get(EVENTS).json()["nextSyncToken"]
    resp = api.get(EVENTS, params={"syncToken": token, "showDeleted": "false"})
    assert resp.status_code == 400


def test_expired_sync_tokens_answer_410_full_sync_required(google, admin: Api) -> None:
    api, acct = google
    for i in range(3):
        _insert(api, summary=str(i))
    token = api.get(EVENTS).json()["nextSyncToken"]
    page_token = api.get(EVENTS, params={"maxResults": 1}).json()["nextPageToken"]
    admin.faults(expire_sync_tokens=[acct["calendars"][0]["id"]])
    for params in ({"syncToken": token}, {"pageToken": page_token}):
        resp = api.get(EVENTS, params=params)
        assert resp.status_code == 410
        assert resp.json() == {"error": {
            "code": 410, "message": "Sync token is no longer valid, a full sync is required.",
            "errors": [{"domain": "calendar", "reason": "fullSyncRequired",
                        "message": "Sync token is no longer valid, a full sync is required."}]}}
    # A new full sync hands out a token that works.
    fresh = api.get(EVENTS).json()["nextSyncToken"]
    assert api.get(EVENTS, params={"syncToken": fresh}).status_code == 200


def test_a_garbage_sync_token_is_a_400(google) -> None:
    api, _ = google
    assert api.get(EVENTS, params={"syncToken": "garbage!"}).status_code == 400


def test_cancelled_instances_carry_their_series(google) -> None:
    api, _ = google
    master = _insert(api, summary="Weekly", recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"])
    token = api.get(EVENTS).json()["nextSyncToken"]
    # Deleting an occurrence by its instance id creates a cancelled instance.
    inst_id = f"{master['id']}_20240112T100000Z"
    assert api.delete(f"{EVENTS}/{inst_id}").status_code == 204
    # An exception written directly, cancelled.
    exc = api.post(EVENTS, json=_event(day=19, recurringEventId=master["id"], status="cancelled",
                                       originalStartTime={"dateTime": "2024-01-19T10:00:00Z"}))
    assert exc.status_code == 200
    assert exc.json()["id"] == f"{master['id']}_20240119T100000Z"
    items = api.get(EVENTS, params={"syncToken": token}).json()["items"]
    by_id = {e["id"]: e for e in items}
    for eid, when in ((inst_id, "2024-01-12T10:00:00Z"),
                      (exc.json()["id"], "2024-01-19T10:00:00Z")):
        assert by_id[eid]["status"] == "cancelled"
        assert by_id[eid]["recurringEventId"] == master["id"]
        assert by_id[eid]["originalStartTime"]["dateTime"] == when
    # The series itself is still live.
    assert master["id"] not in by_id


def test_changes_during_pagination_are_not_lost(google) -> None:
    api, _ = google
    ids = [_insert(api, summary=f"e{i}")["id"] for i in range(4)]
    first = api.get(EVENTS, params={"maxResults": 2}).json()
    api.delete(f"{EVENTS}/{ids[0]}")  # already returned
    api.patch(f"{EVENTS}/{ids[3]}", json={"summary": "late"})  # not yet returned
    rest = api.get(EVENTS, params={"maxResults": 2, "pageToken": first["nextPageToken"]}).json()
    assert [e["id"] for e in rest["items"]] == ids[2:]
    changes = api.get(EVENTS, params={"syncToken": rest["nextSyncToken"]}).json()["items"]
    assert {e["id"] for e in changes} == {ids[0], ids[3]}


def test_time_window_filters_full_lists(google) -> None:
    api, _ = google
    early, late = _insert(api, day=2), _insert(api, day=20)
    items = api.get(EVENTS, params={"timeMin": "2024-01-10T00:00:00Z"}).json()["items"]
    assert [e["id"] for e in items] == [late["id"]]
    items = api.get(EVENTS, params={"timeMax": "2024-01-10T00:00:00Z"}).json()["items"]
    assert [e["id"] for e in items] == [early["id"]]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(0, 9), page=st.integers(1, 4), deleted=st.sets(st.integers(0, 8)))
def test_pagination_always_covers_the_calendar_once(sandbox_server, count: int, page: int,
                                                     deleted: set[int]) -> None:
    sandbox_server.reset()
    admin = Api(sandbox_server.url)
    api = Api(admin.base_url, admin.account("google", "alice@example.com")["access_token"])
    ids = [_insert(api, summary=str(i))["id"] for i in range(count)]
    for i in deleted & set(range(count)):
        api.delete(f"{EVENTS}/{ids[i]}")
    pages, last = _list_all(api, maxResults=page)
    assert [e["id"] for p in pages for e in p] == [
        eid for i, eid in enumerate(ids) if i not in deleted]
    assert all(len(p) == page for p in pages[:-1])
    assert "nextSyncToken" in last
    # Nothing changed since that token: one empty page and a new token.
    changes, _ = _list_all(api, syncToken=last["nextSyncToken"], maxResults=page)
    assert changes == [[]]
