"""Fixtures for the provider-client and account tests: sandbox helpers and a tiny webhook
receiver that answers Graph's validation handshake (so subscriptions can be created)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests


class SandboxAdmin:
    """The sandbox's admin API, as a test uses it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def account(self, provider: str, email: str, calendars: Any = 1) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_sandbox/accounts", timeout=5,
                                 json={"provider": provider, "email": email,
                                       "calendars": calendars})
        assert response.status_code in (200, 201), response.text
        return response.json()

    def faults(self, **body: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_sandbox/faults", json=body, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def state(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_sandbox/state", timeout=5).json()

    def google_event(self, token: str, calendar_id: str, **fields: Any) -> dict[str, Any]:
        body = {"summary": "Standup", "start": {"dateTime": "2030-01-07T09:00:00Z"},
                "end": {"dateTime": "2030-01-07T09:15:00Z"}, **fields}
        response = requests.post(f"{self.url}/calendar/v3/calendars/{calendar_id}/events",
                                 json=body, headers={"Authorization": f"Bearer {token}"},
                                 timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def google_delete(self, token: str, calendar_id: str, event_id: str) -> None:
        response = requests.delete(
            f"{self.url}/calendar/v3/calendars/{calendar_id}/events/{event_id}",
            headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert response.status_code == 204, response.text

    def graph_event(self, token: str, calendar_id: str, **fields: Any) -> dict[str, Any]:
        # Inside the calendarView window (SYNC_WINDOW_*_DAYS around now).
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        body = {"subject": "Review",
                "start": {"dateTime": start.replace(tzinfo=None).isoformat(), "timeZone": "UTC"},
                "end": {"dateTime": (start + timedelta(hours=1)).replace(tzinfo=None).isoformat(),
                        "timeZone": "UTC"}, **fields}
        response = requests.post(f"{self.url}/v1.0/me/calendars/{calendar_id}/events",
                                 json=body, headers={"Authorization": f"Bearer {token}"},
                                 timeout=5)
        assert response.status_code == 201, response.text
        return response.json()

    def graph_delete(self, token: str, event_id: str) -> None:
        response = requests.delete(f"{self.url}/v1.0/me/events/{event_id}",
                                   headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert response.status_code == 204, response.text


@pytest.fixture
def sandbox_admin(sandbox) -> SandboxAdmin:
    return SandboxAdmin(sandbox.url)


@pytest.fixture
def connect(sandbox_admin, user, db) -> Callable[..., Any]:
    """connect("google", calendars=["Work", "Home"]) -> (CalendarAccount, sandbox account)."""
    from apps.calendars.services.accounts import connect_account

    def _connect(provider: str, email: str = "", calendars: Any = 1):
        email = email or f"{provider}.user@example.com"
        created = sandbox_admin.account(provider, email, calendars)
        account = connect_account(user, provider, email, created["refresh_token"])
        return account, created

    return _connect


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        query = parse_qs(urlsplit(self.path).query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if "validationToken" in query:
            token = query["validationToken"][0].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(token)))
            self.end_headers()
            self.wfile.write(token)
            return
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[Any]:
    """A webhook endpoint on a free loopback port: echoes Graph validation tokens, 202s the
    rest. ``receiver.url`` and ``receiver.received``."""
    handler = type("Handler", (_Receiver,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    server.received = handler.received  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def api_calls(db) -> Callable[..., list[tuple[str, int | None, str]]]:
    """api_calls(**filters) -> (operation, status, error_kind) of the recorded provider calls,
    oldest first."""
    from apps.monitoring.models import ProviderApiCall

    def _calls(**filters: Any) -> list[tuple[str, int | None, str]]:
        return list(ProviderApiCall.objects.filter(**filters).order_by("id")
                    .values_list("operation", "status_code", "error_kind"))

    return _calls
