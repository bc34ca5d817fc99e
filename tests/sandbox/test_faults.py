"""Fault injection: shapes, order, determinism under a seed, push faults; admin plumbing."""

from __future__ import annotations

import time

from sandbox.server import SandboxServer
from tests.support.sandbox_http import Api, Receiver

CAL_LIST = "/calendar/v3/users/me/calendarList"
CAL = "/calendar/v3/calendars/alice%40example.com"
EVENT = {"summary": "x", "start": {"dateTime": "2024-01-05T10:00:00Z"},
         "end": {"dateTime": "2024-01-05T11:00:00Z"}}


def test_fail_next_fails_in_order_with_google_shapes(google, admin: Api) -> None:
    api, _ = google
    admin.faults(retry_after_seconds=3,
                 fail_next={"google.calendarList.list": [429, 403, 500]})
    r429, r403, r500, ok = (api.get(CAL_LIST) for _ in range(4))
    assert r429.status_code == 429 and r429.headers["Retry-After"] == "3"
    assert r429.json()["error"]["errors"][0] == {
        "domain": "usageLimits", "reason": "rateLimitExceeded", "message": "Rate Limit Exceeded"}
    assert r403.status_code == 403
    assert r403.json()["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    assert r500.json()["error"]["errors"][0]["reason"] == "backendError"
    assert ok.status_code == 200


def test_graph_and_oauth_faults_use_their_shapes(graph, admin: Api) -> None:
    api, acct = graph
    admin.faults(fail_next={"graph.calendars.list": [429, 503], "oauth.token": [503]})
    r429, r503 = api.get("/v1.0/me/calendars"), api.get("/v1.0/me/calendars")
    assert r429.json()["error"]["code"] == "TooManyRequests"
    assert r429.headers["Retry-After"] == "1"
    assert r503.json()["error"]["code"] == "serviceNotAvailable" and "Retry-After" in r503.headers
    token = admin.post("/common/oauth2/v2.0/token",
                       data={"grant_type": "refresh_token",
                             "refresh_token": acct["refresh_token"]})
    assert token.status_code == 503
    assert token.json()["error"] == "temporarily_unavailable"


def _statuses(admin: Api, seed: int, calls: int = 40) -> list[int]:
    admin.post("/_sandbox/reset")
    api = Api(admin.base_url, admin.account("google", "alice@example.com")["access_token"])
    admin.faults(seed=seed, error_rates={"google.calendarList.list": {"500": 0.3, "429": 0.2}})
    return [api.get(CAL_LIST).status_code for _ in range(calls)]


def test_error_rates_are_deterministic_under_a_seed(admin: Api) -> None:
    first, again, other = _statuses(admin, 7), _statuses(admin, 7), _statuses(admin, 8)
    assert first == again
    assert first != other
    assert {200, 429, 500} <= set(first)


def test_endpoint_rates_replace_the_wildcard(google, graph, admin: Api) -> None:
    gapi, _ = google
    mapi, _ = graph
    admin.faults(error_rates={"*": {"503": 1.0}, "google.calendarList.list": {"500": 0.0}})
    assert mapi.get("/v1.0/me/calendars").status_code == 503
    assert gapi.get(CAL_LIST).status_code == 200
    # Admin endpoints are never faulted.
    assert admin.get("/_sandbox/state").status_code == 200
    assert admin.post("/_sandbox/accounts", json={"provider": "google",
                                                  "email": "x@example.com"}).status_code == 201
    admin.faults(clear=True)
    assert mapi.get("/v1.0/me/calendars").status_code == 200


def test_latency(google, admin: Api) -> None:
    api, _ = google
    admin.faults(latency_ms={"google.calendarList.list": 200})
    started = time.monotonic()
    api.get(CAL_LIST)
    assert time.monotonic() - started >= 0.2


def test_counters_count_every_call(google, admin: Api) -> None:
    api, _ = google
    admin.faults(fail_next={"google.events.list": [500]})
    for _ in range(3):
        api.get(CAL + "/events")
    assert admin.state()["counters"]["google.events.list"] == 3


def test_malformed_fault_requests_change_nothing(admin: Api) -> None:
    before = admin.get("/_sandbox/faults").json()
    for bad in ({"error_rates": {"google.nope": {"500": 0.5}}}, {"bogus": 1},
                {"error_rates": {"*": {"500": 1.5}}}, {"fail_next": {"*": [500]}},
                {"notifications": {"drop_rate": 2}}, {"revoke": ["nobody@example.com"]},
                {"latency_ms": {"*": 10}, "push_max_attempts": 0}):
        resp = admin.post("/_sandbox/faults", json=bad)
        assert resp.status_code == 400, bad
    assert admin.get("/_sandbox/faults").json() == before


def test_dropped_and_duplicated_pushes(sandbox: SandboxServer, google, admin: Api,
                                       make_receiver) -> None:
    api, _ = google
    dropped, doubled = make_receiver(), make_receiver()
    admin.faults(notifications={"drop_rate": 1.0})
    api.post(CAL + "/events/watch", json={"id": "d", "type": "web_hook",
                                          "address": dropped.url})
    admin.faults(notifications={"drop_rate": 0.0, "duplicate_rate": 1.0})
    api.post(CAL + "/events/watch", json={"id": "w", "type": "web_hook",
                                          "address": doubled.url})
    posts = doubled.wait_for(2)
    assert sandbox.pusher.wait_idle()
    assert dropped.posts == []
    assert [p.headers["X-Goog-Message-Number"] for p in posts] == ["1", "1"]
    stats = admin.state()["deliveries"]
    assert stats["d"]["dropped"] == 1 and stats["w"]["duplicated"] == 1


def test_reordered_pushes(sandbox: SandboxServer, google, admin: Api,
                          receiver: Receiver) -> None:
    api, _ = google
    admin.faults(notifications={"reorder": True, "reorder_window_ms": 150})
    api.post(CAL + "/events/watch", json={"id": "r", "type": "web_hook",
                                          "address": receiver.url})
    for _ in range(6):
        api.post(CAL + "/events", json=EVENT)
    posts = receiver.wait_for(7)
    numbers = [int(p.headers["X-Goog-Message-Number"]) for p in posts]
    assert len(numbers) == 7 and numbers != sorted(numbers)


def test_clock(admin: Api) -> None:
    start = admin.get("/_sandbox/clock").json()
    assert start["offset_seconds"] == 0
    moved = admin.post("/_sandbox/clock", json={"advance_seconds": 3600}).json()
    assert moved["offset_seconds"] == 3600 and moved["now"] - start["now"] >= 3600
    assert admin.post("/_sandbox/clock", json={"offset_seconds": 10}).json()[
        "offset_seconds"] == 10
    assert admin.post("/_sandbox/clock", json={"advance_seconds": "x"}).status_code == 400


def test_reset_over_http_wipes_everything(admin: Api) -> None:
    admin.account("google", "alice@example.com")
    admin.faults(fail_next={"google.events.list": [500]})
    admin.post("/_sandbox/clock", json={"advance_seconds": 60})
    assert admin.post("/_sandbox/reset").status_code == 200
    state = admin.state()
    assert state["accounts"] == [] and state["offset_seconds"] == 0
    assert admin.get("/_sandbox/faults").json()["fail_next"] == {}


def test_errors_are_json_and_never_tracebacks(google, admin: Api) -> None:
    api, _ = google
    missing = admin.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "Not Found"
    assert admin.delete("/_sandbox/state").status_code == 405
    bad = api.post(CAL + "/events", data=b"{not json",
                   headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert bad.json()["error"]["errors"][0]["reason"] == "parseError"
    assert admin.post("/_sandbox/accounts", data=b"[").status_code == 400


def _delivered(admin: Api, sandbox: SandboxServer, receiver: Receiver) -> list[str]:
    admin.post("/_sandbox/reset")
    admin.faults(seed=11, notifications={"drop_rate": 0.5})
    api = Api(admin.base_url, admin.account("google", "alice@example.com")["access_token"])
    api.post(CAL + "/events/watch", json={"id": "p", "type": "web_hook",
                                          "address": receiver.url})
    for _ in range(10):
        api.post(CAL + "/events", json=EVENT)
    assert sandbox.pusher.wait_idle()
    with receiver.cond:
        numbers = [p.headers["X-Goog-Message-Number"] for p in receiver.received]
        receiver.received.clear()
    return numbers


def test_push_faults_are_deterministic_under_a_seed(sandbox: SandboxServer, admin: Api,
                                                    receiver: Receiver) -> None:
    first = _delivered(admin, sandbox, receiver)
    assert 0 < len(first) < 11
    assert _delivered(admin, sandbox, receiver) == first
