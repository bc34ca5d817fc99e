"""Google push: events.watch, channels.stop and the header-only notifications they produce."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import util
from .google import BASE, resource_uri
from .oauth import authenticate
from .push import Delivery
from .state import Calendar, Channel
from .web import ApiError, Request, Response, Router, json_response

if TYPE_CHECKING:
    from .server import SandboxServer

DEFAULT_TTL = 604800  # params.ttl default: 7 days
MAX_LIFETIME = 30 * 86400  # the sandbox's own cap; Google publishes none
USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"


def check_address(url: Any, require_https: bool, what: str) -> str:
    """An absolute http(s) URL; plain http only while require_https is off (see README)."""
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"Required parameter: {what}", "required")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(400, f"Invalid {what}: {url}", "invalid")
    if require_https and parts.scheme != "https":
        raise ApiError(400, f"WebHook callback must be HTTPS: {url}", "push.webhookUrlNotHttps")
    return url


def _int_value(value: Any, what: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ApiError(400, f"Invalid value for {what}: {value}", "invalid")


class GooglePush:
    def __init__(self, app: SandboxServer) -> None:
        self.app = app

    def register(self, router: Router) -> None:
        router.add("POST", BASE + r"/calendars/(?P<calendar_id>[^/]+)/events/watch", self.watch,
                   "google.events.watch", "google")
        router.add("POST", BASE + "/channels/stop", self.stop, "google.channels.stop", "google")

    def watch(self, req: Request, calendar_id: str) -> Response:
        account = authenticate(self.app, req, "google")
        body = req.json_object()
        channel_id = body.get("id")
        if not isinstance(channel_id, str) or not channel_id:
            raise ApiError(400, "Required parameter: id", "required")
        if len(channel_id) > 64:
            raise ApiError(400, "Invalid channel id: longer than 64 characters.", "invalid")
        if str(body.get("type", "")).lower() not in ("web_hook", "webhook"):
            raise ApiError(400, f"Invalid value for: type ({body.get('type')!r})", "invalid")
        address = check_address(body.get("address"), bool(self.app.faults.get("require_https")),
                                "address")
        token = body.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > 256):
            raise ApiError(400, "Invalid channel token: at most 256 characters.", "invalid")
        params = body.get("params") or {}
        ttl = _int_value(params.get("ttl", DEFAULT_TTL), "params.ttl") if isinstance(
            params, dict) else DEFAULT_TTL
        state = self.app.state
        with state.lock:
            cal = self.app.google.calendar(account, calendar_id)
            now = state.now()
            if any(c.id == channel_id and c.live(now) for c in state.channels):
                raise ApiError(400, f"Channel id {channel_id} not unique", "channelIdNotUnique",
                               domain="push")
            expiration_ms = int((now + min(max(ttl, 1), MAX_LIFETIME)) * 1000)
            if body.get("expiration") is not None:
                requested = _int_value(body["expiration"], "expiration")
                if requested <= now * 1000:
                    raise ApiError(400, "Invalid expiration: it is in the past.", "invalid")
                expiration_ms = min(expiration_ms, requested)
            channel = Channel(id=channel_id, resource_id=cal.resource_id,
                              resource_uri=resource_uri(req.base_url, cal.id),
                              calendar_id=cal.id, account_id=account.id, address=address,
                              token=token, expiration_ms=expiration_ms)
            state.channels.append(channel)
            # The sync message may well reach the receiver before this response does.
            self._send(channel, "sync")
        out: dict[str, Any] = {"kind": "api#channel", "id": channel.id,
                               "resourceId": channel.resource_id,
                               "resourceUri": channel.resource_uri,
                               "expiration": str(channel.expiration_ms)}
        if token is not None:
            out["token"] = token
        return json_response(out)

    def stop(self, req: Request) -> Response:
        account = authenticate(self.app, req, "google")
        body = req.json_object()
        channel_id, resource_id = body.get("id"), body.get("resourceId")
        if not channel_id:
            raise ApiError(400, "Required parameter: id", "required")
        state = self.app.state
        with state.lock:
            now = state.now()
            for ch in state.channels:
                if (ch.id == channel_id and ch.live(now) and ch.resource_id == resource_id
                        and ch.account_id == account.id):
                    ch.stopped = True
                    return Response(204)
        raise ApiError(404, f"Channel '{channel_id}' not found for project 'sandbox'",
                       "notFound")

    # --- notifications ----------------------------------------------------------------------

    def notify(self, cal: Calendar, base_url: str | None = None) -> None:
        """A change happened on `cal`: one `exists` push per live channel. Caller holds the lock."""
        state = self.app.state
        now = state.now()
        for ch in state.channels_for(cal.id):
            if ch.live(now):
                self._send(ch, "exists")

    def _send(self, ch: Channel, resource_state: str) -> None:
        state = self.app.state
        if resource_state == "sync":
            ch.message_number = 1
        else:
            # Increasing but never sequential, as Google's are.
            ch.message_number += state.rng.randint(2, 97)
        headers = {
            "X-Goog-Channel-ID": ch.id,
            "X-Goog-Channel-Expiration": util.http_date(ch.expiration_ms / 1000),
            "X-Goog-Resource-ID": ch.resource_id,
            "X-Goog-Resource-URI": ch.resource_uri,
            "X-Goog-Resource-State": resource_state,
            "X-Goog-Message-Number": str(ch.message_number),
            "User-Agent": USER_AGENT,
            "Content-Length": "0",
        }
        if ch.token is not None:
            headers["X-Goog-Channel-Token"] = ch.token

        def still_live() -> bool:
            with state.lock:
                return ch.live(state.now())

        self.app.pusher.submit(Delivery(
            url=ch.address, body=b"", headers=headers, lane=f"google:{id(ch)}",
            stat_keys=[ch.id], policy="google",
            timeout=float(self.app.faults.get("push_timeout_seconds")),
            still_live=still_live))
