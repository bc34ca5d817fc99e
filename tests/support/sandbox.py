"""The provider sandbox as a test drives it: its admin API (accounts, faults, state, the alert
sinks, its clock) and its provider-shaped endpoints, the way a user's calendar app would use
them; the provider's truth is read back from ``GET /_sandbox/state``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

_counter = itertools.count(1)


def sandbox_state(base_url: str) -> dict[str, Any]:
    resp = requests.get(f"{base_url}/_sandbox/state", timeout=10)
    resp.raise_for_status()
    return resp.json()


def set_faults(base_url: str, **config: Any) -> dict[str, Any]:
    resp = requests.post(f"{base_url}/_sandbox/faults", json=config, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def call_count(base_url: str, key: str) -> int:
    """How many times the sandbox answered ``key`` (e.g. ``google.events.list``)."""
    return int(sandbox_state(base_url)["counters"].get(key, 0))


@dataclass
class RemoteAccount:
    provider: str
    email: str
    refresh_token: str
    access_token: str
    calendar_ids: list[str]
    calendar_names: list[str]


def remote_account(base_url: str, provider: str, email: str,
                   calendars: int | list[str] = 1) -> RemoteAccount:
    """A new account at the sandbox: ``calendars`` is a count or the calendars' names."""
    resp = requests.post(f"{base_url}/_sandbox/accounts", timeout=10,
                         json={"provider": provider, "email": email, "calendars": calendars})
    assert resp.status_code == 201, resp.text
    data = resp.json()
    return RemoteAccount(provider, email, data["refresh_token"], data["access_token"],
                         [c["id"] for c in data["calendars"]],
                         [c["name"] for c in data["calendars"]])


def fresh_access_token(url: str, provider: str, email: str) -> str:
    """A bearer token valid at the sandbox's current (virtual) time, to act as the user."""
    response = requests.post(f"{url}/_sandbox/accounts", timeout=10,
                             json={"provider": provider, "email": email})
    assert response.status_code in (200, 201), response.text
    return response.json()["access_token"]


def follow_clock(url: str) -> None:
    """Make the sandbox's "now" equal this process's (possibly travelled) ``time.time()``.

    Robust to the sandbox running in this process (where time_machine already moves its
    clock) or in another one: the offset is corrected by the difference actually observed.
    """
    current = requests.get(f"{url}/_sandbox/clock", timeout=10).json()
    offset = current["offset_seconds"] + (time.time() - current["now"])
    response = requests.post(f"{url}/_sandbox/clock", json={"offset_seconds": offset},
                             timeout=10)
    assert response.status_code == 200, response.text


def remote_channels(url: str) -> dict[str, dict[str, Any]]:
    """Every Google channel and Graph subscription the sandbox knows, by id."""
    state = sandbox_state(url)
    channels = {c["id"]: {**c, "provider": "google"} for c in state["google_channels"]}
    channels.update({s["id"]: {**s, "provider": "microsoft"}
                     for s in state["graph_subscriptions"]})
    return channels


def push_address_nowhere(url: str) -> str:
    """A WEBHOOK_BASE_URL whose pushes the sandbox gives up on at once (a sink answering 400
    to an empty body), for tests that do not need notifications delivered."""
    return f"{url}/_sandbox/sinks/webhook/nowhere"


def sinks(url: str) -> dict[str, Any]:
    """What the sandbox's alert sinks (Slack, webhook, PagerDuty) received."""
    return requests.get(f"{url}/_sandbox/sinks", timeout=5).json()


def seen(url: str, outbox) -> dict[str, list[tuple[str, str]]]:
    """What each alert channel received, as (incident key, event) pairs in arrival order
    (e-mail: Django's ``outbox``).

    PagerDuty only knows trigger / resolve: its events are reported as such.
    """
    got = sinks(url)
    out: dict[str, list[tuple[str, str]]] = {"email": [], "slack": [], "webhook": [],
                                             "pagerduty": []}
    for mail in outbox:
        fields = dict(line.split(": ", 1) for line in mail.body.splitlines() if ": " in line)
        out["email"].append((fields["Incident"], fields["Event"]))
    for entry in got["slack"]:
        key_field, event_field = entry["body"]["blocks"][2]["fields"][:2]
        out["slack"].append((key_field["text"].split("`")[1], event_field["text"].split("\n")[1]))
    for entry in got["webhook"]:
        out["webhook"].append((entry["body"]["incident_key"], entry["body"]["event"]))
    for entry in got["pagerduty"]:
        out["pagerduty"].append((entry["body"]["dedup_key"], entry["body"]["event_action"]))
    assert got["rejected"] == [], got["rejected"]
    return out


class Writer:
    """Creates, updates and deletes events through the provider-shaped endpoints."""

    def __init__(self, base_url: str, remote: RemoteAccount) -> None:
        self.base_url = base_url
        self.provider = remote.provider
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {remote.access_token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        resp = self.session.request(method, self.base_url + path, **kwargs)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp

    def create(self, calendar_id: str, summary: str | None = None, *,
               start: datetime | None = None, **extra: Any) -> dict[str, Any]:
        summary = summary or f"event {next(_counter)}"
        start = start or datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        end = start + timedelta(minutes=30)
        if self.provider == "google":
            body = {"summary": summary, "start": {"dateTime": start.isoformat()},
                    "end": {"dateTime": end.isoformat()}, **extra}
            return self._call("POST", f"/calendar/v3/calendars/{calendar_id}/events",
                              json=body).json()
        fmt = "%Y-%m-%dT%H:%M:%S"
        body = {"subject": summary, "start": {"dateTime": start.strftime(fmt), "timeZone": "UTC"},
                "end": {"dateTime": end.strftime(fmt), "timeZone": "UTC"}, **extra}
        return self._call("POST", f"/v1.0/me/calendars/{calendar_id}/events", json=body).json()

    def rename(self, calendar_id: str, event_id: str, summary: str) -> dict[str, Any]:
        if self.provider == "google":
            return self._call("PATCH", f"/calendar/v3/calendars/{calendar_id}/events/{event_id}",
                              json={"summary": summary}).json()
        return self._call("PATCH", f"/v1.0/me/events/{event_id}", json={"subject": summary}).json()

    def patch(self, calendar_id: str, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
        path = (f"/calendar/v3/calendars/{calendar_id}/events/{event_id}"
                if self.provider == "google" else f"/v1.0/me/events/{event_id}")
        return self._call("PATCH", path, json=body).json()

    def delete(self, calendar_id: str, event_id: str) -> None:
        path = (f"/calendar/v3/calendars/{calendar_id}/events/{event_id}"
                if self.provider == "google" else f"/v1.0/me/events/{event_id}")
        self._call("DELETE", path)


def provider_events(state: dict[str, Any], calendar_id: str) -> dict[str, str]:
    """{event id: etag} of what the provider shows in that calendar: not deleted, and not a
    cancelled single event (a cancelled instance of a series is kept, hidden, as locally)."""
    live = {}
    for event in state["events"].get(calendar_id, []):
        if event.get("_deleted"):
            continue
        if "@odata.etag" in event:
            instance = bool(event.get("seriesMasterId")) or event.get("type") in (
                "occurrence", "exception")
            if event.get("isCancelled") and not instance:
                continue
            live[event["id"]] = event["@odata.etag"]
        else:
            if event.get("status") == "cancelled" and not event.get("recurringEventId"):
                continue
            live[event["id"]] = event["etag"]
    return live


def local_events(calendar) -> dict[str, str]:
    from apps.calendars.models import Event

    return dict(Event.objects.filter(calendar=calendar).values_list("provider_event_id", "etag"))


def out_of_step(url: str, calendars) -> list[str]:
    """The calendars whose local events differ from what the provider shows (read once);
    empty when every one is in step."""
    state = sandbox_state(url)
    return [f"{c.pk}:{c.provider_calendar_id}" for c in calendars
            if local_events(c) != provider_events(state, c.provider_calendar_id)]
