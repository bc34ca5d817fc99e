"""Google push: events.watch validation, the notification headers, stop, expiry, retries."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

from sandbox.server import SandboxServer
from tests.support.sandbox_http import Answer, Api, Receiver

CAL = "/calendar/v3/calendars/alice%40example.com"
WATCH = CAL + "/events/watch"
EVENT = {"summary": "x", "start": {"dateTime": "2024-01-05T10:00:00Z"},
         "end": {"dateTime": "2024-01-05T11:00:00Z"}}
UA = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"


def _watch(api: Api, receiver: Receiver, channel_id: str = "chan-1", **extra: Any):
    body = {"id": channel_id, "type": "web_hook", "address": receiver.url, **extra}
    return api.post(WATCH, json=body)


def _goog(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower().startswith("x-goog-")}


def test_watch_answers_a_channel_and_sends_a_sync_message(google, receiver: Receiver) -> None:
    api, acct = google
    resp = _watch(api, receiver, token="tok-123", params={"ttl": "3600"})
    assert resp.status_code == 200, resp.text
    ch = resp.json()
    assert ch["kind"] == "api#channel" and ch["id"] == "chan-1" and ch["token"] == "tok-123"
    assert ch["resourceId"] and ch["resourceUri"].endswith(
        "/calendar/v3/calendars/alice%40example.com/events?alt=json")
    assert isinstance(ch["expiration"], str)
    (sync,) = receiver.wait_for(1)
    assert sync.body == b""
    assert sync.headers["Content-Length"] == "0"
    assert sync.headers["User-Agent"] == UA
    assert _goog(sync.headers) == {
        "X-Goog-Channel-ID": "chan-1", "X-Goog-Channel-Token": "tok-123",
        "X-Goog-Channel-Expiration": sync.headers["X-Goog-Channel-Expiration"],
        "X-Goog-Resource-ID": ch["resourceId"], "X-Goog-Resource-URI": ch["resourceUri"],
        "X-Goog-Resource-State": "sync", "X-Goog-Message-Number": "1"}
    expiry = parsedate_to_datetime(sync.headers["X-Goog-Channel-Expiration"])
    assert sync.headers["X-Goog-Channel-Expiration"].endswith(" GMT")
    assert int(expiry.timestamp()) == int(ch["expiration"]) // 1000


def test_changes_push_exists_with_increasing_non_sequential_numbers(
        google, receiver: Receiver) -> None:
    api, _ = google
    _watch(api, receiver)
    ev = api.post(CAL + "/events", json=EVENT).json()
    api.patch(f"{CAL}/events/{ev['id']}", json={"summary": "y"})
    api.delete(f"{CAL}/events/{ev['id']}")
    pushes = receiver.wait_for(4)
    assert [p.headers["X-Goog-Resource-State"] for p in pushes] == ["sync"] + ["exists"] * 3
    numbers = [int(p.headers["X-Goog-Message-Number"]) for p in pushes]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4
    assert all(b - a > 1 for a, b in zip(numbers, numbers[1:], strict=False))
    # No token was set, so no token header.
    assert all("X-Goog-Channel-Token" not in p.headers for p in pushes)


def test_watch_refuses_bad_channels(google, receiver: Receiver) -> None:
    api, _ = google
    assert _watch(api, receiver, channel_id="x" * 65).status_code == 400
    assert _watch(api, receiver, channel_id="").status_code == 400
    assert _watch(api, receiver, type="email").status_code == 400
    assert _watch(api, receiver, token="t" * 257).status_code == 400
    assert api.post(WATCH, json={"id": "a", "type": "web_hook"}).status_code == 400
    assert _watch(api, receiver, channel_id="x" * 64).status_code == 200
    dup = _watch(api, receiver, channel_id="x" * 64)
    assert dup.status_code == 400
    assert dup.json()["error"]["errors"][0]["reason"] == "channelIdNotUnique"


def test_expiration_is_the_most_restrictive_of_request_ttl_and_cap(
        google, admin: Api, receiver: Receiver) -> None:
    api, _ = google
    now_ms = admin.get("/_sandbox/clock").json()["now"] * 1000
    default = int(_watch(api, receiver, "c1").json()["expiration"])
    assert abs(default - (now_ms + 604800_000)) < 5000
    ttl = int(_watch(api, receiver, "c2", params={"ttl": "60"}).json()["expiration"])
    assert abs(ttl - (now_ms + 60_000)) < 5000
    asked = int(now_ms + 120_000)
    assert int(_watch(api, receiver, "c3", expiration=asked).json()["expiration"]) == asked
    huge = int(_watch(api, receiver, "c4", params={"ttl": str(90 * 86400)}).json()["expiration"])
    assert abs(huge - (now_ms + 30 * 86400_000)) < 5000
    assert _watch(api, receiver, "c5", expiration=int(now_ms - 1000)).status_code == 400


def test_stop_needs_the_returned_resource_id(google, receiver: Receiver) -> None:
    api, acct = google
    ch = _watch(api, receiver).json()
    receiver.wait_for(1)
    wrong = api.post("/calendar/v3/channels/stop",
                     json={"id": ch["id"], "resourceId": acct["calendars"][0]["id"]})
    assert wrong.status_code == 404
    assert "not found" in wrong.json()["error"]["message"]
    ok = api.post("/calendar/v3/channels/stop",
                  json={"id": ch["id"], "resourceId": ch["resourceId"]})
    assert ok.status_code == 204 and ok.content == b""
    again = api.post("/calendar/v3/channels/stop",
                     json={"id": ch["id"], "resourceId": ch["resourceId"]})
    assert again.status_code == 404
    api.post(CAL + "/events", json=EVENT)
    assert _watch(api, receiver).status_code == 200  # the id is free again
    assert len(receiver.wait_for(2)) == 2  # the new channel's sync, no push to the stopped one
    assert all(p.headers["X-Goog-Resource-State"] == "sync" for p in receiver.posts)


def test_expired_channels_get_no_pushes(sandbox: SandboxServer, google, admin: Api,
                                        make_receiver) -> None:
    api, _ = google
    short, early = make_receiver(), make_receiver()
    _watch(api, short, "short", params={"ttl": "60"})
    _watch(api, early, "early")
    short.wait_for(1)
    early.wait_for(1)
    admin.faults(expire_subscription=["early"])
    admin.post("/_sandbox/clock", json={"advance_seconds": 61})
    api.post(CAL + "/events", json=EVENT)
    assert sandbox.pusher.wait_idle()
    assert len(short.posts) == 1 and len(early.posts) == 1
    channels = {c["id"]: c for c in admin.state()["google_channels"]}
    assert channels["short"]["expired"] and channels["early"]["expired"]


def test_it_retries_5xx_with_backoff_but_not_4xx(sandbox: SandboxServer, google, admin: Api,
                                                 make_receiver) -> None:
    api, _ = google
    flaky, broken = make_receiver(), make_receiver()
    flaky.script = [Answer(500), Answer(503)]  # the sync message fails twice, then 200
    broken.script = [Answer(404)]
    _watch(api, flaky, "flaky")
    _watch(api, broken, "broken")
    flaky.wait_for(3)
    assert sandbox.pusher.wait_idle()
    times = [p.at for p in flaky.posts]
    assert len(times) == 3
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095  # base 0.05 s, doubling
    assert len(broken.posts) == 1
    deliveries = admin.state()["deliveries"]
    assert deliveries["flaky"]["sent"] == 1 and deliveries["flaky"]["retries"] == 2
    assert deliveries["broken"]["failed"] == 1 and deliveries["broken"]["retries"] == 0


def test_a_slow_receiver_does_not_block_the_api(sandbox: SandboxServer, google,
                                                receiver: Receiver) -> None:
    api, _ = google
    receiver.default = Answer(200, delay=1.0)
    _watch(api, receiver)
    started = time.monotonic()
    for _ in range(3):
        assert api.post(CAL + "/events", json=EVENT).status_code == 200
    assert time.monotonic() - started < 0.5


def test_reset_stops_pending_deliveries(sandbox: SandboxServer, google, admin: Api,
                                        receiver: Receiver) -> None:
    api, _ = google
    admin.faults(push_retry_base_seconds=0.3)
    receiver.default = Answer(503)
    _watch(api, receiver)
    receiver.wait_for(1)
    assert admin.post("/_sandbox/reset").status_code == 200
    time.sleep(0.5)
    assert len(receiver.posts) == 1
    assert sandbox.pusher.wait_idle(0.1)
