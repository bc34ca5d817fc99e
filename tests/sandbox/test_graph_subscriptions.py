"""Graph subscriptions: validation handshake, limits, renewal, notifications, lifecycle."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.server import SandboxServer
from tests.support.sandbox_http import Answer, Api, Receiver

VALIDATION_FAILED = ("Subscription validation request failed. Notification endpoint must "
                     "respond with 200 OK to validation request.")


def _in(minutes: float, admin: Api) -> str:
    now = admin.get("/_sandbox/clock").json()["now"]
    return (datetime.fromtimestamp(now, UTC) + timedelta(minutes=minutes)).isoformat()


def _subscribe(api: Api, admin: Api, receiver: Receiver, minutes: float = 4000,
               **extra: Any):
    body = {"changeType": "created,updated,deleted", "notificationUrl": receiver.url,
            "resource": "/me/events", "expirationDateTime": _in(minutes, admin),
            "clientState": "secret-state", **extra}
    return api.post("/v1.0/subscriptions", json=body)


def _event() -> dict[str, Any]:
    return {"subject": "x", "start": {"dateTime": "2024-01-05T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2024-01-05T11:00:00", "timeZone": "UTC"}}


def test_it_validates_the_endpoint_before_answering(graph, admin: Api,
                                                    receiver: Receiver) -> None:
    api, acct = graph
    resp = _subscribe(api, admin, receiver)
    assert resp.status_code == 201, resp.text
    sub = resp.json()
    assert sub["resource"] == "/me/events" and sub["clientState"] == "secret-state"
    assert sub["changeType"] == "created,updated,deleted"
    (check,) = receiver.received
    token = check.query["validationToken"][0]
    assert " " in token and "+" in token and ":" in token
    assert "%20" in check.raw_query and "%2B" in check.raw_query
    assert admin.state()["graph_subscriptions"][0]["clientState"] is True


def test_it_refuses_an_endpoint_that_echoes_the_encoded_token(graph, admin: Api,
                                                              receiver: Receiver) -> None:
    api, _ = graph
    receiver.echo = "raw"
    resp = _subscribe(api, admin, receiver)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "ValidationError"
    assert resp.json()["error"]["message"] == VALIDATION_FAILED
    assert admin.state()["graph_subscriptions"] == []


def test_it_refuses_empty_echoes_and_wrong_content_types(graph, admin: Api,
                                                         receiver: Receiver) -> None:
    api, _ = graph
    for mode in ("none", "json"):
        receiver.echo = mode
        assert _subscribe(api, admin, receiver).status_code == 400


def test_it_refuses_a_slow_echo(graph, admin: Api, receiver: Receiver) -> None:
    api, _ = graph
    admin.faults(validation_timeout_seconds=0.2)
    receiver.echo_delay = 0.5
    resp = _subscribe(api, admin, receiver)
    assert resp.status_code == 400
    assert "timed out" in resp.json()["error"]["message"]


def test_the_lifecycle_url_is_validated_too(graph, admin: Api, make_receiver) -> None:
    api, _ = graph
    notify, lifecycle = make_receiver(), make_receiver()
    lifecycle.echo = "raw"
    resp = _subscribe(api, admin, notify, lifecycleNotificationUrl=lifecycle.url)
    assert resp.status_code == 400
    assert len(lifecycle.received) == 1


def test_expiration_limits(graph, admin: Api, receiver: Receiver) -> None:
    api, _ = graph
    too_far = _subscribe(api, admin, receiver, minutes=10071)
    assert too_far.status_code == 400
    assert too_far.json()["error"]["message"] == (
        "Subscription expiration can only be 10070 minutes in the future.")
    assert _subscribe(api, admin, receiver, minutes=-1).status_code == 400
    assert _subscribe(api, admin, receiver, minutes=10069).status_code == 201


def test_it_refuses_bad_fields(graph, admin: Api, receiver: Receiver) -> None:
    api, acct = graph
    assert _subscribe(api, admin, receiver, clientState="s" * 256).status_code == 400
    assert _subscribe(api, admin, receiver, changeType="created,moved").status_code == 400
    assert _subscribe(api, admin, receiver, resource="/me/messages").status_code == 400
    assert _subscribe(api, admin, receiver, resource="/me/calendars/nope/events"
                      ).status_code == 400
    cal = acct["calendars"][0]["id"]
    assert _subscribe(api, admin, receiver, resource=f"me/calendars/{cal}/events"
                      ).status_code == 201


def test_changes_are_notified_in_batches(sandbox: SandboxServer, graph, admin: Api,
                                         make_receiver) -> None:
    api, acct = graph
    receiver = make_receiver()
    sub = _subscribe(api, admin, receiver).json()
    cal = acct["calendars"][0]["id"]
    created = api.post(f"/v1.0/me/calendars/{cal}/events", json=_event()).json()
    (post,) = receiver.wait_for(1)
    items = json.loads(post.body)["value"]
    assert [i["changeType"] for i in items] == ["created", "updated"]  # Graph's duplicates
    user_id = admin.state()["accounts"][0]["user_id"]
    resource = f"Users/{user_id}/Events/{created['id']}"
    assert items[0] == {
        "id": None, "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "clientState": "secret-state", "changeType": "created", "resource": resource,
        "tenantId": items[0]["tenantId"],
        "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": resource,
                         "@odata.etag": created["@odata.etag"], "id": created["id"]}}
    assert post.headers["Content-Type"].startswith("application/json")
    api.patch(f"/v1.0/me/events/{created['id']}", json={"subject": "y"})
    api.delete(f"/v1.0/me/events/{created['id']}")
    posts = receiver.wait_for(2)
    assert sandbox.pusher.wait_idle()
    assert len(receiver.posts) == 2
    assert [i["changeType"] for i in json.loads(posts[1].body)["value"]] == ["updated",
                                                                            "deleted"]


def test_it_retries_failed_notifications(sandbox: SandboxServer, graph, admin: Api,
                                         receiver: Receiver) -> None:
    api, _ = graph
    _subscribe(api, admin, receiver)
    receiver.script = [Answer(500), Answer(400)]  # Graph retries any non-2xx
    api.post("/v1.0/me/events", json=_event())
    posts = receiver.wait_for(3)
    assert len(posts) == 3 and posts[0].body == posts[2].body
    assert sandbox.pusher.wait_idle()
    (stats,) = admin.state()["deliveries"].values()
    assert stats["sent"] == 1 and stats["retries"] == 2


def test_renew_delete_and_reauthorize(graph, admin: Api, receiver: Receiver) -> None:
    api, _ = graph
    sub = _subscribe(api, admin, receiver, minutes=60).json()
    path = f"/v1.0/subscriptions/{sub['id']}"
    renewed = api.patch(path, json={"expirationDateTime": _in(3000, admin)})
    assert renewed.status_code == 200
    assert renewed.json()["expirationDateTime"] > sub["expirationDateTime"]
    assert api.patch(path, json={"expirationDateTime": _in(20000, admin)}).status_code == 400
    reauth = api.post(path + "/reauthorize")
    assert reauth.status_code == 200
    assert reauth.json()["expirationDateTime"] == renewed.json()["expirationDateTime"]
    assert api.delete(path).status_code == 204
    gone = api.delete(path)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ResourceNotFound"


def test_expired_subscriptions_are_gone(sandbox: SandboxServer, graph, admin: Api,
                                        receiver: Receiver) -> None:
    api, _ = graph
    sub = _subscribe(api, admin, receiver, minutes=60).json()
    admin.post("/_sandbox/clock", json={"advance_seconds": 3601})
    # The access token has expired too: reconnect.
    api = Api(admin.base_url, admin.account("microsoft", "bob@example.com")["access_token"])
    path = f"/v1.0/subscriptions/{sub['id']}"
    assert api.patch(path, json={"expirationDateTime": _in(60, admin)}).status_code == 404
    assert api.delete(path).status_code == 404
    api.post("/v1.0/me/events", json=_event())
    assert sandbox.pusher.wait_idle()
    assert receiver.posts == []


def test_lifecycle_notifications_on_demand(graph, admin: Api, make_receiver) -> None:
    api, _ = graph
    notify, lifecycle = make_receiver(), make_receiver()
    sub = _subscribe(api, admin, notify, lifecycleNotificationUrl=lifecycle.url).json()
    admin.faults(lifecycle=[{"subscription_id": sub["id"], "event": "missed"},
                            {"subscription_id": sub["id"], "event": "subscriptionRemoved"}])
    posts = lifecycle.wait_for(2)
    items = [json.loads(p.body)["value"][0] for p in posts]
    assert [i["lifecycleEvent"] for i in items] == ["missed", "subscriptionRemoved"]
    assert set(items[0]) == {"subscriptionId", "subscriptionExpirationDateTime", "tenantId",
                             "clientState", "lifecycleEvent"}
    assert items[0]["clientState"] == "secret-state"
    resp = api.patch(f"/v1.0/subscriptions/{sub['id']}",
                     json={"expirationDateTime": _in(60, admin)})
    assert resp.status_code == 404
    assert notify.posts == []


def test_reauthorization_required_near_expiry(graph, admin: Api, make_receiver) -> None:
    api, _ = graph
    notify, lifecycle = make_receiver(), make_receiver()
    sub = _subscribe(api, admin, notify, minutes=60,
                     lifecycleNotificationUrl=lifecycle.url).json()
    admin.post("/_sandbox/clock", json={"advance_seconds": 46 * 60})
    (post,) = lifecycle.wait_for(1)
    item = json.loads(post.body)["value"][0]
    assert item["lifecycleEvent"] == "reauthorizationRequired"
    assert item["subscriptionId"] == sub["id"]
    # Once per expiry value: more requests send nothing more.
    admin.get("/_sandbox/state")
    assert len(lifecycle.wait_for(2, timeout=0.3)) == 1
