"""Helpers for the sync engine, worker, polling and convergence tests (a uniquely named module;
``tests/`` is on sys.path through the root conftest).

They drive the sandbox only through its admin API and its provider-shaped endpoints, the way a
user's calendar app would, and read the provider's truth back from ``GET /_sandbox/state``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from bench.support import free_port, wait_http  # noqa: F401 - re-exported for the e2e tests

_counter = itertools.count(1)


def sandbox_state(base_url: str) -> dict[str, Any]:
    resp = requests.get(f"{base_url}/_sandbox/state", timeout=10)
    resp.raise_for_status()
    return resp.json()


def set_faults(base_url: str, **config: Any) -> dict[str, Any]:
    resp = requests.post(f"{base_url}/_sandbox/faults", json=config, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def counter(base_url: str, key: str) -> int:
    return int(sandbox_state(base_url)["counters"].get(key, 0))


@dataclass
class RemoteAccount:
    provider: str
    email: str
    refresh_token: str
    access_token: str
    calendar_ids: list[str]


def remote_account(base_url: str, provider: str, email: str, calendars: int = 1) -> RemoteAccount:
    resp = requests.post(f"{base_url}/_sandbox/accounts", timeout=10,
                         json={"provider": provider, "email": email, "calendars": calendars})
    assert resp.status_code == 201, resp.text
    data = resp.json()
    return RemoteAccount(provider, email, data["refresh_token"], data["access_token"],
                         [c["id"] for c in data["calendars"]])


def connect(user, remote: RemoteAccount):
    """The local account and calendars for a sandbox account (as the OAuth flow leaves them)."""
    from apps.calendars.models import Calendar, CalendarAccount

    account = CalendarAccount.objects.create(
        user=user, provider=remote.provider, email=remote.email,
        refresh_token=remote.refresh_token,
    )
    calendars = [
        Calendar.objects.create(calendar_account=account, provider_calendar_id=cid,
                                name=f"{remote.email} #{i}")
        for i, cid in enumerate(remote.calendar_ids)
    ]
    return account, calendars


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


def subscription_for(calendar, **fields):
    """An active push subscription row, as the subscription manager leaves it."""
    import uuid

    from apps.webhooks.models import WebhookSubscription

    fields.setdefault("status", WebhookSubscription.Status.ACTIVE)
    fields.setdefault("expires_at", timezone_now() + timedelta(days=3))
    return WebhookSubscription.objects.create(
        calendar=calendar, provider=calendar.calendar_account.provider,
        channel_id=str(uuid.uuid4()), **fields,
    )


def store_notifications(subscription, count: int = 1, *, kind: str = "change",
                        state: str = "exists") -> list:
    """Rows as the receivers store them (one per delivery)."""
    import uuid

    from apps.webhooks.models import WebhookNotification

    return WebhookNotification.objects.bulk_create([
        WebhookNotification(subscription=subscription, provider=subscription.provider,
                            kind=kind, resource_state=state, dedup_key=str(uuid.uuid4()))
        for _ in range(count)
    ])


def timezone_now() -> datetime:
    from django.utils import timezone

    return timezone.now()


def database_url() -> str:
    """The URL of the database this test uses (pytest's test database), for subprocesses."""
    from urllib.parse import quote

    from django.db import connection

    s = connection.settings_dict
    auth = quote(s["USER"] or "")
    if s["PASSWORD"]:
        auth += ":" + quote(s["PASSWORD"])
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def process_env(sandbox_url: str, **extra: str) -> dict[str, str]:
    """Environment for a manage.py / gunicorn subprocess sharing this test's database."""
    import os

    from django.conf import settings

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings.test",
           "DATABASE_URL": database_url(), "SANDBOX_URL": sandbox_url,
           "REDIS_URL": getattr(settings, "REDIS_URL", ""), "PYTHONUNBUFFERED": "1"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


# --- real processes (gunicorn, workers) for end-to-end tests ------------------------------------
# free_port / wait_http are the benchmark's (re-exported above).

class Processes:
    """Subprocesses started by a test, each logging to a file; all stopped on exit."""

    def __init__(self, log_dir) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, Any] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]):
        import subprocess
        from pathlib import Path

        root = Path(__file__).resolve().parents[1]
        out = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc.log_file = out
        self.procs[name] = proc
        return proc

    def output(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc) -> None:
        import signal
        import subprocess

        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.log_file.close()
