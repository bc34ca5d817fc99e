"""A light stream of calendar changes for `make run`, made the way a user's calendar app would.

Every few seconds one demo account creates, renames or deletes an event through the sandbox's
provider endpoints (Google ``POST /calendar/v3/calendars/{id}/events``, Graph
``POST /v1.0/me/calendars/{id}/events`` …) with an access token from the sandbox's OAuth token
endpoint. The sandbox then pushes real notifications to the web process, the worker syncs,
and the dashboard moves. Standard library only; nothing from Django (this runs in the
`make run` supervisor process).
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

SUMMARIES = ("Standup", "Design review", "1:1", "Lunch", "Planning", "Retro", "Customer call",
             "Focus time", "Dentist", "Team offsite", "Budget review", "Interview")
CLIENT_ID = "calendar-sync-dev"


@dataclass
class DemoAccount:
    provider: str
    email: str
    calendars: list[str]
    refresh_token: str = ""
    access_token: str = ""
    expires_at: float = 0.0
    ours: dict[str, list[str]] = field(default_factory=dict)  # calendar id → our event ids


class SandboxError(Exception):
    pass


class DemoTraffic(threading.Thread):
    def __init__(self, sandbox_url: str, interval: float = 5.0, seed: int | None = None,
                 out=print) -> None:
        super().__init__(name="demo-traffic", daemon=True)
        self.url = sandbox_url.rstrip("/")
        self.interval = interval
        self.random = random.Random(seed)
        self.out = out
        self.stopping = threading.Event()
        self.accounts: list[DemoAccount] = []
        self.changes = 0

    # --- HTTP ----------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, token: str = "",
              form: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=data, headers=headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - sandbox
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, None

    # --- accounts and tokens ---------------------------------------------------------------
    def discover(self) -> list[DemoAccount]:
        """The sandbox's accounts (those seed_demo made), each with a fresh refresh token."""
        status, state = self._call("GET", "/_sandbox/state")
        if status != 200:
            raise SandboxError(f"sandbox state: HTTP {status}")
        accounts = []
        for acc in state.get("accounts", []):
            status, body = self._call("POST", "/_sandbox/accounts",
                                      {"provider": acc["provider"], "email": acc["email"]})
            if status in (200, 201) and body:
                accounts.append(DemoAccount(acc["provider"], acc["email"],
                                            [c["id"] for c in body["calendars"]],
                                            refresh_token=body["refresh_token"]))
        self.accounts = accounts
        return accounts

    def _token(self, account: DemoAccount) -> str:
        if account.access_token and time.time() < account.expires_at - 60:
            return account.access_token
        path = "/token" if account.provider == "google" else "/common/oauth2/v2.0/token"
        status, body = self._call("POST", path, form={
            "grant_type": "refresh_token", "refresh_token": account.refresh_token,
            "client_id": CLIENT_ID, "scope": "offline_access Calendars.ReadWrite"})
        if status != 200 or not body:
            raise SandboxError(f"token for {account.email}: HTTP {status}")
        account.access_token = body["access_token"]
        account.expires_at = time.time() + float(body.get("expires_in", 3600))
        # Microsoft rotates refresh tokens: the one just used is no longer valid.
        account.refresh_token = body.get("refresh_token") or account.refresh_token
        return account.access_token

    # --- one change ------------------------------------------------------------------------
    def change_once(self) -> str:
        account = self.accounts[self.changes % len(self.accounts)]
        calendar = self.random.choice(account.calendars)
        ours = account.ours.setdefault(calendar, [])
        roll = self.random.random()
        action = "create" if len(ours) < 2 or roll < 0.4 else "rename" if roll < 0.8 else "delete"
        summary = self.random.choice(SUMMARIES)
        status, event_id = self._apply(account, calendar, action, summary, ours)
        if status == 401:  # token expired or revoked meanwhile: one fresh try
            account.access_token = ""
            status, event_id = self._apply(account, calendar, action, summary, ours)
        self.changes += 1
        if status >= 300:
            return f"{account.provider} {account.email}: {action} failed (HTTP {status})"
        return f"{account.provider} {account.email}: {action}d '{summary}' ({event_id[:12]}…)"

    def _apply(self, account: DemoAccount, calendar: str, action: str, summary: str,
               ours: list[str]) -> tuple[int, str]:
        token = self._token(account)
        cal = urllib.parse.quote(calendar, safe="")
        google = account.provider == "google"
        if action == "create":
            start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(
                days=self.random.randint(0, 14), hours=self.random.randint(1, 9))
            end = start + timedelta(minutes=self.random.choice((15, 30, 60)))
            if google:
                body = {"summary": summary, "start": {"dateTime": start.isoformat()},
                        "end": {"dateTime": end.isoformat()}}
                path = f"/calendar/v3/calendars/{cal}/events"
            else:
                fmt = "%Y-%m-%dT%H:%M:%S"
                body = {"subject": summary,
                        "start": {"dateTime": start.strftime(fmt), "timeZone": "UTC"},
                        "end": {"dateTime": end.strftime(fmt), "timeZone": "UTC"}}
                path = f"/v1.0/me/calendars/{cal}/events"
            status, created = self._call("POST", path, body, token)
            if status < 300 and created:
                ours.append(created["id"])
                return status, created["id"]
            return status, ""
        event_id = self.random.choice(ours)
        eid = urllib.parse.quote(event_id, safe="")
        path = f"/calendar/v3/calendars/{cal}/events/{eid}" if google else f"/v1.0/me/events/{eid}"
        if action == "rename":
            status, _ = self._call("PATCH", path, {"summary" if google else "subject": summary},
                                   token)
        else:
            status, _ = self._call("DELETE", path, None, token)
            if status < 300 or status in (404, 410):
                ours.remove(event_id)
        return status, event_id

    # --- the thread ------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                if not self.accounts and not self.discover():
                    continue
                self.out(f"[demo] {self.change_once()}")
            except (OSError, SandboxError, KeyError, ValueError) as exc:
                self.out(f"[demo] change skipped: {exc}")

    def stop(self) -> None:
        self.stopping.set()
