"""HTTP plumbing shared by the provider modules: request/response values, typed errors, routing.

Handlers raise `ApiError` with provider-neutral fields; `render_error` turns it into the body
shape of the route's family (Google, Graph, OAuth, ...), so a handler never builds error JSON.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote


class ApiError(Exception):
    """A refusal. `code` is the Google reason, Graph error code or OAuth error string."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        domain: str = "global",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.domain = domain
        self.headers = headers or {}
        self.extra = extra or {}


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj).encode()
    merged = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    return Response(status, body, merged)


def text_response(text: str, status: int = 200) -> Response:
    return Response(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})


@dataclass
class Request:
    method: str
    path: str
    raw_query: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    base_url: str  # "http://host:port" as the client addressed us; used for absolute links

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.raw_query, keep_blank_values=True)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        if not self.body.strip():
            raise ApiError(400, "Request body is empty; a JSON document is required.",
                           "parseError")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "Parse Error: the body is not valid JSON.", "parseError")

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise ApiError(400, "The JSON body must be an object.", "parseError")
        return data

    def form(self) -> dict[str, str]:
        """Form fields (OAuth token requests); JSON bodies are accepted too, as Google does."""
        ctype = self.header("content-type", "") or ""
        if "json" in ctype:
            data = self.json()
            return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        text = self.body.decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


Handler = Callable[..., Response]


@dataclass
class Route:
    method: str
    regex: re.Pattern[str]
    handler: Handler
    key: str | None  # endpoint key for counters and faults; None = admin, never faulted
    family: str


class NoRoute(Exception):
    def __init__(self, status: int, family: str) -> None:
        super().__init__(status)
        self.status = status
        self.family = family


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, key: str | None = None,
            family: str = "admin") -> None:
        self.routes.append(Route(method, re.compile(pattern), handler, key, family))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        path_matched: Route | None = None
        for route in self.routes:
            m = route.regex.fullmatch(path)
            if not m:
                continue
            if route.method == method:
                # Path segments arrive percent-encoded (calendar ids are e-mail addresses).
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
            path_matched = path_matched or route
        if path_matched:
            raise NoRoute(405, path_matched.family)
        raise NoRoute(404, family_for_path(path))


def family_for_path(path: str) -> str:
    if path.startswith("/calendar/"):
        return "google"
    if path.startswith("/v1.0/"):
        return "graph"
    return "admin"


# --- error rendering per family -------------------------------------------------------------

_GOOGLE_DEFAULTS = {
    400: ("invalid", "global"), 401: ("authError", "global"), 403: ("forbidden", "global"),
    404: ("notFound", "global"), 409: ("duplicate", "global"), 410: ("deleted", "global"),
    429: ("rateLimitExceeded", "usageLimits"), 500: ("backendError", "global"),
    502: ("backendError", "global"), 503: ("backendError", "global"),
    504: ("backendError", "global"),
}
_GRAPH_DEFAULTS = {
    400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "ErrorAccessDenied",
    404: "ErrorItemNotFound", 405: "MethodNotAllowed", 409: "ErrorConflict",
    410: "syncStateNotFound", 429: "TooManyRequests", 500: "generalException",
    502: "badGateway", 503: "serviceNotAvailable", 504: "gatewayTimeout",
}


def _oauth_code(status: int) -> str:
    if status == 401:
        return "invalid_client"
    if status == 429 or status >= 500:
        return "temporarily_unavailable"
    return "invalid_request"


def render_error(family: str, err: ApiError) -> Response:
    status = err.status
    if err.code == "parseError" and family != "google":
        err.code = None  # Google's reason; the others use their status default
    if family == "google":
        reason, domain = _GOOGLE_DEFAULTS.get(status, ("failed", "global"))
        reason = err.code or reason
        domain = err.domain if err.domain != "global" else domain
        item = {"domain": domain, "reason": reason, "message": err.message}
        body: Any = {"error": {"code": status, "message": err.message, "errors": [item],
                               **err.extra}}
        return json_response(body, status, err.headers)
    if family == "graph":
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        inner = {"date": now, "request-id": str(uuid.uuid4()),
                 "client-request-id": str(uuid.uuid4())}
        code = err.code or _GRAPH_DEFAULTS.get(status, "UnknownError")
        body = {"error": {"code": code, "message": err.message, "innerError": inner,
                          **err.extra}}
        return json_response(body, status, err.headers)
    if family == "oauth":
        body = {"error": err.code or _oauth_code(status), "error_description": err.message,
                **err.extra}
        return json_response(body, status, err.headers)
    if family == "slack":
        # Slack incoming webhooks answer plain-text error codes.
        resp = text_response(err.code or "error", status)
        resp.headers.update(err.headers)
        return resp
    if family == "pagerduty":
        label = "invalid event" if status == 400 else (err.code or "error")
        body = {"status": label, "message": err.message, **err.extra}
        return json_response(body, status, err.headers)
    body = {"error": {"code": err.code or status, "message": err.message, **err.extra}}
    return json_response(body, status, err.headers)


def fault_error(family: str, status: int, retry_after: float) -> ApiError:
    """The error an injected fault answers with, in the shape the provider really uses."""
    ra = {"Retry-After": str(max(0, round(retry_after)))}
    if family == "google":
        if status in (403, 429):
            return ApiError(status, "Rate Limit Exceeded", "rateLimitExceeded",
                            domain="usageLimits", headers=ra if status == 429 else None)
        if status == 503:
            return ApiError(503, "The service is currently unavailable.", "backendError")
        if status >= 500:
            return ApiError(status, "Backend Error", "backendError")
        return ApiError(status, f"Injected fault {status}")
    if family == "graph":
        messages = {429: "Application is over its MailboxConcurrency limit.",
                    503: "The service is temporarily unavailable. Retry later."}
        return ApiError(status, messages.get(status, f"Injected fault {status}"),
                        headers=ra if status in (429, 503) else None)
    if family == "slack":
        codes = {429: "rate_limited", 400: "invalid_payload", 403: "invalid_token",
                 404: "no_service", 410: "channel_is_archived"}
        return ApiError(status, "fault", codes.get(status, "service_unavailable"),
                        headers=ra if status == 429 else None)
    if family == "pagerduty" and status == 429:
        return ApiError(429, "Requests for this service are arriving too quickly.",
                        "throttle event", headers=ra)
    return ApiError(status, f"Injected fault {status}", headers=ra if status == 429 else None)
