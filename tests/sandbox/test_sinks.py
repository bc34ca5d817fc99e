"""Alert sinks: Slack, generic webhook, PagerDuty Events v2."""

from __future__ import annotations

from tests.support.sandbox_http import Api

SLACK = "/_sandbox/sinks/slack/T000/B000/XXXX"
TRIGGER = {"routing_key": "R" * 32, "event_action": "trigger",
           "payload": {"summary": "Webhooks failing", "source": "calendar-sync",
                       "severity": "critical"}}


def test_slack_accepts_text_or_blocks_and_records_it(admin: Api) -> None:
    ok = admin.post(SLACK, json={"text": "hello"})
    assert ok.status_code == 200 and ok.text == "ok"
    assert admin.post(SLACK, json={"blocks": [{"type": "section"}]}).status_code == 200
    sinks = admin.get("/_sandbox/sinks").json()
    assert [s["body"] for s in sinks["slack"]] == [{"text": "hello"},
                                                    {"blocks": [{"type": "section"}]}]
    assert sinks["slack"][0]["path"] == SLACK
    assert sinks["slack"][0]["headers"]["content-type"] == "application/json"
    assert sinks["slack"][0]["received_at"].endswith("Z")


def test_slack_refuses_payloads_without_text(admin: Api) -> None:
    for body in ({"username": "bot"}, {"text": ""}):
        resp = admin.post(SLACK, json=body)
        assert resp.status_code == 400 and resp.text == "invalid_payload"
    assert admin.post(SLACK, data=b"nope").status_code == 400
    sinks = admin.get("/_sandbox/sinks").json()
    assert sinks["slack"] == [] and len(sinks["rejected"]) == 3


def test_generic_webhook(admin: Api) -> None:
    assert admin.post("/_sandbox/sinks/webhook/alerts", json={"a": 1}).json() == {"ok": True}
    assert admin.post("/_sandbox/sinks/webhook/alerts", data=b"{").status_code == 400
    assert admin.get("/_sandbox/sinks").json()["webhook"][0]["body"] == {"a": 1}


def test_pagerduty_accepts_valid_events(admin: Api) -> None:
    resp = admin.post("/v2/enqueue", json=TRIGGER)
    assert resp.status_code == 202
    body = resp.json()
    assert body["status"] == "success" and body["message"] == "Event processed"
    assert body["dedup_key"]
    resolve = admin.post("/v2/enqueue", json={"routing_key": "R" * 32, "event_action": "resolve",
                                              "dedup_key": body["dedup_key"]})
    assert resolve.status_code == 202 and resolve.json()["dedup_key"] == body["dedup_key"]
    assert len(admin.get("/_sandbox/sinks").json()["pagerduty"]) == 2


def test_pagerduty_refuses_invalid_events(admin: Api) -> None:
    bad_events = [
        {**TRIGGER, "routing_key": ""},
        {**TRIGGER, "event_action": "escalate"},
        {**TRIGGER, "payload": {**TRIGGER["payload"], "severity": "fatal"}},
        {**TRIGGER, "payload": {"summary": "x", "severity": "info"}},
        {"routing_key": "R", "event_action": "acknowledge"},
    ]
    for event in bad_events:
        resp = admin.post("/v2/enqueue", json=event)
        assert resp.status_code == 400, event
        assert resp.json()["status"] == "invalid event" and resp.json()["errors"]
    assert admin.get("/_sandbox/sinks").json()["pagerduty"] == []


def test_sinks_can_be_faulted_and_cleared(admin: Api) -> None:
    admin.faults(fail_next={"sinks.slack": [429], "sinks.pagerduty": [500]})
    limited = admin.post(SLACK, json={"text": "x"})
    assert limited.status_code == 429 and limited.text == "rate_limited"
    assert "Retry-After" in limited.headers
    assert admin.post("/v2/enqueue", json=TRIGGER).status_code == 500
    assert admin.post(SLACK, json={"text": "x"}).status_code == 200
    assert admin.delete("/_sandbox/sinks").status_code == 204
    assert admin.get("/_sandbox/sinks").json()["slack"] == []
