"""The HTTP server: SandboxServer (the Python API tests use), request parsing and dispatch.

Dispatch order for a provider route: count the call, sleep the injected latency, answer an
injected error if one is drawn, run the lazy timers, then the handler. Handlers raise ApiError;
anything else is a sandbox bug, logged to stderr and answered as a JSON 500 without traceback.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .admin import Admin
from .faults import Faults
from .google import GoogleApi
from .google_push import GooglePush
from .graph_subscriptions import GraphSubscriptions
from .microsoft import GraphApi
from .oauth import OAuth
from .push import Pusher
from .sinks import Sinks
from .state import State
from .web import (
    ApiError,
    NoRoute,
    Request,
    Response,
    Router,
    fault_error,
    render_error,
)

MAX_BODY = 10 * 1024 * 1024


class SandboxServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int = 0,
                 verbose: bool = False, workers: int = 4) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.verbose = verbose
        self.state = State(seed)
        self.faults = Faults(seed)
        self.pusher = Pusher(self.faults, workers=workers)
        self.router = Router()
        self.oauth = OAuth(self)
        self.google = GoogleApi(self)
        self.google_push = GooglePush(self)
        self.graph = GraphApi(self)
        self.graph_subs = GraphSubscriptions(self)
        self.sinks = Sinks(self)
        self.admin = Admin(self)
        # watch is registered before events/{id} would be; order matters only for same method.
        for part in (self.admin, self.oauth, self.google_push, self.google, self.graph,
                     self.graph_subs, self.sinks):
            part.register(self.router)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        handler = type("BoundHandler", (_Handler,), {"app": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.pusher.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="sandbox-http", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def reset(self) -> None:
        self.pusher.reset()
        self.state.clear()
        self.faults.reset(self.seed)
        # Deliveries queued between the two calls above belong to the old world: drop them.
        self.pusher.reset()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self.pusher.stop()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- dispatch -----------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes,
               base_url: str) -> Response:
        parts = urlsplit(raw_path)
        req = Request(method, parts.path, parts.query, headers, body, base_url)
        family = "admin"
        try:
            # HEAD is answered as GET (the body is dropped when writing).
            route, params = self.router.match("GET" if method == "HEAD" else method,
                                              parts.path)
            family = route.family
            if route.key is not None:
                with self.state.lock:
                    self.state.counters[route.key] += 1
                delay = self.faults.latency_seconds(route.key)
                if delay > 0:
                    time.sleep(delay)
                code = self.faults.pick_error(route.key)
                if code is not None:
                    retry_after = float(self.faults.get("retry_after_seconds"))
                    return render_error(family, fault_error(family, code, retry_after))
            self.graph_subs.tick()
            return route.handler(req, **params)
        except NoRoute as exc:
            message = "Not Found" if exc.status == 404 else "Method Not Allowed"
            return render_error(exc.family, ApiError(exc.status, message))
        except ApiError as exc:
            return render_error(family, exc)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return render_error(family, ApiError(500, "Internal sandbox error."))


class _Handler(BaseHTTPRequestHandler):
    app: SandboxServer
    protocol_version = "HTTP/1.1"  # keep-alive, so client sessions reuse connections
    server_version = "CalendarSyncSandbox/1.0"
    timeout = 60  # an idle keep-alive connection is closed after this

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus delayed ACKs
        # would add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        started = time.monotonic()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._write(render_error("admin", ApiError(400, "Unreadable request body.")))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        host = headers.get("host") or f"{self.app.host}:{self.app.port}"
        resp = self.app.handle(self.command, self.path, headers, body, f"http://{host}")
        self._write(resp)
        if self.app.verbose:
            ms = (time.monotonic() - started) * 1000
            print(f"sandbox {self.command} {self.path} {resp.status} {ms:.0f}ms",
                  file=sys.stderr)

    def _write(self, resp: Response) -> None:
        try:
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if resp.body and self.command != "HEAD":
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request is printed by _dispatch when --verbose; nothing otherwise.
        pass
