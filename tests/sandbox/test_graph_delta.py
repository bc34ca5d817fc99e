"""Microsoft Graph calendars, events and calendarView delta."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.sandbox_http import Api

WINDOW = {"startDateTime": "2024-01-01T00:00:00Z", "endDateTime": "2024-02-01T00:00:00Z"}


def _event(subject: str = "Sync", day: int = 5) -> dict[str, Any]:
    return {"subject": subject, "location": {"displayName": "Room 1"},
            "start": {"dateTime": f"2024-01-{day:02d}T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": f"2024-01-{day:02d}T11:00:00", "timeZone": "UTC"}}


def _cal(acct: dict[str, Any]) -> str:
    return acct["calendars"][0]["id"]


def _create(api: Api, acct: dict[str, Any], **kw: Any) -> dict[str, Any]:
    resp = api.post(f"/v1.0/me/calendars/{_cal(acct)}/events", json=_event(**kw))
    assert resp.status_code == 201, resp.text
    return resp.json()


def _rounds(api: Api, url: str, page_size: int | None = None, **params: Any):
    """Follow nextLinks; returns the pages and the final deltaLink."""
    headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
    pages = []
    while True:
        body = api.get(url, params=params, headers=headers).json()
        pages.append(body["value"])
        if "@odata.nextLink" in body:
            assert "@odata.deltaLink" not in body
            url, params = body["@odata.nextLink"], {}
            continue
        return pages, body["@odata.deltaLink"]


def test_calendars_and_event_crud(graph) -> None:
    api, acct = graph
    cals = api.get("/v1.0/me/calendars").json()["value"]
    assert cals[0]["id"] == _cal(acct) and cals[0]["isDefaultCalendar"] is True
    ev = _create(api, acct)
    assert ev["@odata.etag"].startswith('W/"') and ev["changeKey"] in ev["@odata.etag"]
    assert ev["subject"] == "Sync" and ev["lastModifiedDateTime"].endswith("Z")
    patched = api.patch(f"/v1.0/me/events/{ev['id']}", json={"subject": "Moved"})
    assert patched.status_code == 200
    assert patched.json()["@odata.etag"] != ev["@odata.etag"]
    assert api.delete(f"/v1.0/me/events/{ev['id']}").status_code == 204
    gone = api.delete(f"/v1.0/me/events/{ev['id']}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "ErrorItemNotFound"


def test_delta_requires_the_window(graph) -> None:
    api, acct = graph
    url = f"/v1.0/me/calendars/{_cal(acct)}/calendarView/delta"
    resp = api.get(url, params={"startDateTime": WINDOW["startDateTime"]})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "ErrorInvalidParameter"


@pytest.mark.parametrize("param", ["$select", "$filter", "$orderby", "$search", "$expand"])
def test_delta_refuses_query_options(graph, param: str) -> None:
    api, acct = graph
    url = f"/v1.0/me/calendars/{_cal(acct)}/calendarView/delta"
    assert api.get(url, params={**WINDOW, param: "subject"}).status_code == 400


def test_delta_pages_end_with_a_delta_link(graph, sandbox) -> None:
    api, acct = graph
    ids = [_create(api, acct, subject=f"e{i}")["id"] for i in range(5)]
    url = f"/v1.0/me/calendars/{_cal(acct)}/calendarView/delta"
    resp = api.get(url, params=WINDOW, headers={"Prefer": "odata.maxpagesize=2"})
    assert resp.headers["Preference-Applied"] == "odata.maxpagesize=2"
    next_link = resp.json()["@odata.nextLink"]
    assert next_link.startswith(sandbox.url + url + "?$skiptoken=")
    pages, delta_link = _rounds(api, url, 2, **WINDOW)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e["id"] for p in pages for e in p] == ids
    assert delta_link.startswith(sandbox.url + url + "?$deltatoken=")


@pytest.mark.parametrize("function", ["delta()", "microsoft.graph.delta()"])
@pytest.mark.parametrize("scope", ["calendar", "default calendar"])
def test_delta_answers_the_odata_function_form(graph, function: str, scope: str) -> None:
    # Graph's own SDKs call `calendarView/delta()`; Graph accepts it like `calendarView/delta`.
    api, acct = graph
    ids = [_create(api, acct, subject=f"e{i}")["id"] for i in range(3)]
    where = f"/me/calendars/{_cal(acct)}" if scope == "calendar" else "/me"
    pages, delta_link = _rounds(api, f"/v1.0{where}/calendarView/{function}", 2, **WINDOW)
    assert [e["id"] for p in pages for e in p] == ids
    api.patch(f"/v1.0/me/events/{ids[1]}", json={"subject": "Moved"})
    pages, _ = _rounds(api, delta_link)
    assert [e["id"] for p in pages for e in p] == [ids[1]]


def test_delta_link_returns_changes_and_removals(graph) -> None:
    api, acct = graph
    a, b, c = (_create(api, acct, subject=s) for s in "abc")
    url = f"/v1.0/me/calendars/{_cal(acct)}/calendarView/delta"
    _, delta_link = _rounds(api, url, **WINDOW)
    api.patch(f"/v1.0/me/events/{a['id']}", json={"subject": "A"})
    api.delete(f"/v1.0/me/events/{b['id']}")
    d = _create(api, acct, subject="d")
    moved = _create(api, acct, subject="moved")
    _, delta_link = _rounds(api, delta_link)
    api.patch(f"/v1.0/me/events/{moved['id']}", json={
        "start": {"dateTime": "2025-06-01T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2025-06-01T11:00:00", "timeZone": "UTC"}})
    pages, next_delta = _rounds(api, delta_link)
    assert [e["id"] for e in pages[0]] == [moved["id"]]
    assert pages[0][0]["@removed"] == {"reason": "deleted"}
    # A new initial round shows what is left in the window.
    pages, _ = _rounds(api, url, **WINDOW)
    assert [e["id"] for e in pages[0]] == [a["id"], c["id"], d["id"]]


def test_delta_round_from_an_old_link(graph) -> None:
    api, acct = graph
    a, b = _create(api, acct, subject="a"), _create(api, acct, subject="b")
    url = f"/v1.0/me/calendars/{_cal(acct)}/calendarView/delta"
    _, delta_link = _rounds(api, url, **WINDOW)
    api.patch(f"/v1.0/me/events/{a['id']}", json={"subject": "A"})
    api.delete(f"/v1.0/me/events/{b['id']}")
    c = _create(api, acct, subject="c")
    pages, _ = _rounds(api, delta_link, page_size=2)
    items = [e for p in pages for e in p]
    assert [len(p) for p in pages] == [2, 1]
    by_id = {e["id"]: e for e in items}
    assert by_id[a["id"]]["subject"] == "A"
    assert by_id[b["id"]] == {"@odata.type": "#microsoft.graph.event", "id": b["id"],
                              "@removed": {"reason": "deleted"}}
    assert by_id[c["id"]]["subject"] == "c"


def test_expired_delta_tokens_answer_410_with_a_fresh_location(graph, admin: Api) -> None:
    api, acct = graph
    ev = _create(api, acct)
    url = f"/v1.0/me/calendars/{_cal(acct)}/calendarView/delta"
    _, delta_link = _rounds(api, url, **WINDOW)
    admin.faults(expire_sync_tokens=True)
    resp = api.get(delta_link)
    assert resp.status_code == 410
    assert resp.json()["error"]["code"] == "syncStateNotFound"
    location = resp.headers["Location"]
    query = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert query["$deltatoken"] == [""]
    assert query["startDateTime"] == [WINDOW["startDateTime"]]
    pages, _ = _rounds(api, location)
    assert [e["id"] for e in pages[0]] == [ev["id"]]


def test_initial_round_only_returns_events_in_the_window(graph) -> None:
    api, acct = graph
    inside = _create(api, acct, day=5)
    resp = api.post(f"/v1.0/me/calendars/{_cal(acct)}/events", json={
        **_event(), "start": {"dateTime": "2023-06-01T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2023-06-01T11:00:00", "timeZone": "UTC"}})
    assert resp.status_code == 201
    pages, _ = _rounds(api, "/v1.0/me/calendarView/delta", **WINDOW)
    assert [e["id"] for e in pages[0]] == [inside["id"]]
