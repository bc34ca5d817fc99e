"""Plain HTTP against the sandbox (no Django): a client for its endpoints and admin API, and a
local webhook endpoint that records what it receives."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests


class Api:
    """requests against the sandbox, optionally with a bearer token."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else self.base_url + path
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("allow_redirects", False)
        return self.session.request(method, url, **kwargs)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self("DELETE", path, **kw)

    def faults(self, **config: Any) -> dict[str, Any]:
        resp = self.post("/_sandbox/faults", json=config)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def state(self) -> dict[str, Any]:
        return self.get("/_sandbox/state").json()

    def account(self, provider: str, email: str, calendars: Any = 1,
                **extra: Any) -> dict[str, Any]:
        """A new account: ``calendars`` is a count or the calendars' names."""
        resp = self.post("/_sandbox/accounts", json={"provider": provider, "email": email,
                                                     "calendars": calendars, **extra})
        assert resp.status_code == 201, resp.text
        return resp.json()


@dataclass
class Received:
    method: str
    path: str
    raw_query: str
    headers: dict[str, str]  # as sent (original case)
    body: bytes
    at: float

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.raw_query, keep_blank_values=True)

    @property
    def is_validation(self) -> bool:
        return "validationToken" in self.query


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    delay: float = 0.0


@dataclass
class Receiver:
    """Records every request; answers from `script` (one per request) or `default`.

    Validation requests (`?validationToken=`) are answered by `echo`: "decoded" (correct),
    "raw" (the still-encoded query value), "none" (empty body), "json" (right text, wrong
    Content-Type), after `echo_delay` seconds.
    """

    url: str = ""
    received: list[Received] = field(default_factory=list)
    script: list[Answer] = field(default_factory=list)
    default: Answer = field(default_factory=Answer)
    echo: str = "decoded"
    echo_delay: float = 0.0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def record(self, item: Received) -> Answer:
        with self.cond:
            self.received.append(item)
            self.cond.notify_all()
            if item.is_validation:
                return self._echo(item)
            return self.script.pop(0) if self.script else self.default

    def _echo(self, item: Received) -> Answer:
        raw = item.raw_query.split("validationToken=", 1)[1]
        decoded = item.query["validationToken"][0]
        if self.echo == "raw":
            return Answer(200, raw.encode(), "text/plain", self.echo_delay)
        if self.echo == "none":
            return Answer(200, b"", "text/plain", self.echo_delay)
        if self.echo == "json":
            return Answer(200, decoded.encode(), "application/json", self.echo_delay)
        return Answer(200, decoded.encode(), "text/plain; charset=utf-8", self.echo_delay)

    @property
    def posts(self) -> list[Received]:
        """Everything but validation handshakes."""
        with self.cond:
            return [r for r in self.received if not r.is_validation]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len([r for r in self.received if not r.is_validation]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return [r for r in self.received if not r.is_validation]


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            answer = receiver.record(Received(
                "POST", parts.path, parts.query, dict(self.headers.items()), body,
                time.monotonic()))
            if answer.delay:
                time.sleep(answer.delay)
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except OSError:
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    return receiver, server
