"""Alert sinks: Slack incoming webhook, a generic JSON webhook, PagerDuty Events API v2.

They refuse what the real services refuse, so an alert channel that builds a bad payload fails
in tests instead of in production.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from . import util
from .web import ApiError, Request, Response, Router, json_response, text_response

if TYPE_CHECKING:
    from .server import SandboxServer

SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")


class Sinks:
    def __init__(self, app: SandboxServer) -> None:
        self.app = app

    def register(self, router: Router) -> None:
        router.add("POST", r"/_sandbox/sinks/slack(?:/.*)?", self.slack, "sinks.slack", "slack")
        router.add("POST", r"/_sandbox/sinks/webhook(?:/.*)?", self.webhook, "sinks.webhook",
                   "webhook")
        for path in ("/v2/enqueue", "/_sandbox/sinks/pagerduty/v2/enqueue"):
            router.add("POST", path, self.pagerduty, "sinks.pagerduty", "pagerduty")
        router.add("GET", "/_sandbox/sinks", self.list)
        router.add("DELETE", "/_sandbox/sinks", self.clear)

    def _record(self, kind: str, req: Request, body: Any, status: int | None = None) -> None:
        state = self.app.state
        with state.lock:
            entry = {"received_at": util.rfc3339(state.now()), "path": req.path,
                     "headers": dict(req.headers), "body": body}
            if status is not None:
                entry.update(sink=kind, status=status)
                state.sinks["rejected"].append(entry)
            else:
                state.sinks[kind].append(entry)

    def _refuse(self, kind: str, req: Request, body: Any, err: ApiError) -> ApiError:
        self._record(kind, req, body, err.status)
        return err

    def slack(self, req: Request) -> Response:
        ctype = req.header("content-type", "") or ""
        try:
            if "x-www-form-urlencoded" in ctype:
                payload = parse_qs(req.body.decode()).get("payload", [""])[0]
                data = json.loads(payload)
            else:
                data = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            raise self._refuse("slack", req, req.body.decode("utf-8", "replace"),
                               ApiError(400, "invalid_payload", "invalid_payload"))
        if not isinstance(data, dict) or not (data.get("text") or data.get("blocks")):
            raise self._refuse("slack", req, data,
                               ApiError(400, "no_text", "invalid_payload"))
        self._record("slack", req, data)
        return text_response("ok")

    def webhook(self, req: Request) -> Response:
        try:
            data = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            raise self._refuse("webhook", req, req.body.decode("utf-8", "replace"),
                               ApiError(400, "The body is not valid JSON.", "invalid_json"))
        self._record("webhook", req, data)
        return json_response({"ok": True})

    def pagerduty(self, req: Request) -> Response:
        try:
            data = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            data = None
        errors = self._pagerduty_errors(data)
        if errors:
            raise self._refuse("pagerduty", req, data, ApiError(
                400, "Event object is invalid", extra={"errors": errors}))
        assert isinstance(data, dict)
        dedup_key = data.get("dedup_key") or secrets.token_hex(16)
        self._record("pagerduty", req, data)
        return json_response({"status": "success", "message": "Event processed",
                              "dedup_key": dedup_key}, 202)

    @staticmethod
    def _pagerduty_errors(data: Any) -> list[str]:
        if not isinstance(data, dict):
            return ["Request body is not a JSON object."]
        errors = []
        if not data.get("routing_key"):
            errors.append("'routing_key' is missing or blank.")
        action = data.get("event_action")
        if action not in ACTIONS:
            errors.append("'event_action' must be one of trigger, acknowledge, resolve.")
        if action == "trigger":
            payload = data.get("payload")
            if not isinstance(payload, dict):
                errors.append("'payload' is missing or not an object.")
            else:
                for name in ("summary", "source"):
                    if not payload.get(name):
                        errors.append(f"'payload.{name}' is missing or blank.")
                if payload.get("severity") not in SEVERITIES:
                    errors.append("'payload.severity' must be one of critical, error, "
                                  "warning, info.")
        elif action in ("acknowledge", "resolve") and not data.get("dedup_key"):
            errors.append("'dedup_key' is required for acknowledge and resolve.")
        return errors

    def list(self, req: Request) -> Response:
        with self.app.state.lock:
            return json_response({k: list(v) for k, v in self.app.state.sinks.items()})

    def clear(self, req: Request) -> Response:
        with self.app.state.lock:
            for records in self.app.state.sinks.values():
                records.clear()
        return Response(204)
