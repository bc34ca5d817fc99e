"""Graph subscriptions: create (with the synchronous validation handshake), renew, delete,
reauthorize; batched change notifications and lifecycle notifications.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import util
from .google_push import check_address
from .oauth import authenticate
from .push import Delivery, post
from .state import Account, Calendar, Event, Subscription
from .web import ApiError, Request, Response, Router, json_response

if TYPE_CHECKING:
    from .server import SandboxServer

MAX_MINUTES = 10070
CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
VALIDATION_FAILED = ("Subscription validation request failed. Notification endpoint must "
                     "respond with 200 OK to validation request.")
_RESOURCE = re.compile(r"/?(?:me|users/(?P<user>[^/]+))(?:/calendars/(?P<cal>[^/]+))?/events",
                       re.IGNORECASE)
_SUB = r"/v1.0/subscriptions/(?P<sub_id>[^/]+)"


def _not_found(sub_id: str) -> ApiError:
    return ApiError(404, f"The object was not found. Subscription '{sub_id}' doesn't exist.",
                    "ResourceNotFound")


class GraphSubscriptions:
    def __init__(self, app: SandboxServer) -> None:
        self.app = app

    def register(self, router: Router) -> None:
        f = "graph"
        router.add("POST", "/v1.0/subscriptions", self.create, "graph.subscriptions.create", f)
        router.add("GET", "/v1.0/subscriptions", self.list, "graph.subscriptions.list", f)
        router.add("GET", _SUB, self.get, "graph.subscriptions.list", f)
        router.add("PATCH", _SUB, self.renew, "graph.subscriptions.renew", f)
        router.add("DELETE", _SUB, self.delete, "graph.subscriptions.delete", f)
        router.add("POST", _SUB + "/reauthorize", self.reauthorize,
                   "graph.subscriptions.reauthorize", f)

    def sub_json(self, req: Request, sub: Subscription) -> dict[str, Any]:
        return {"@odata.context": f"{req.base_url}/v1.0/$metadata#subscriptions/$entity",
                "id": sub.id, "resource": sub.resource, "applicationId": sub.application_id,
                "changeType": ",".join(sub.change_types), "clientState": sub.client_state,
                "notificationUrl": sub.notification_url,
                "lifecycleNotificationUrl": sub.lifecycle_url,
                "expirationDateTime": util.graph_time(sub.expiration),
                "creatorId": self.app.state.accounts[sub.account_id].user_id,
                "latestSupportedTlsVersion": "v1_2", "includeResourceData": False}

    def _expiration(self, value: Any) -> float:
        ts = util.parse_instant(value) if isinstance(value, str) else None
        if ts is None:
            raise ApiError(400, "expirationDateTime is required and must be an ISO 8601 "
                                "date-time.", "InvalidRequest")
        now = self.app.state.now()
        if ts <= now:
            raise ApiError(400, "Subscription expiration must be in the future.",
                           "InvalidRequest")
        if ts > now + MAX_MINUTES * 60:
            raise ApiError(400, f"Subscription expiration can only be {MAX_MINUTES} minutes "
                                "in the future.", "InvalidRequest")
        return ts

    def _resource_calendar(self, account: Account, resource: Any) -> str | None:
        m = _RESOURCE.fullmatch(resource) if isinstance(resource, str) else None
        user = m.group("user") if m else None
        if not m or (user and user.lower() not in (account.user_id, account.email.lower())):
            raise ApiError(400, f"Resource '{resource}' is not supported for this account.",
                           "InvalidRequest")
        cal_id = m.group("cal")
        if cal_id is not None:
            cal = self.app.state.calendars.get(cal_id)
            if cal is None or cal.account_id != account.id:
                raise ApiError(400, f"Resource '{resource}' does not exist.", "InvalidRequest")
        return cal_id

    # --- create -----------------------------------------------------------------------------

    def create(self, req: Request) -> Response:
        account = authenticate(self.app, req, "microsoft")
        body = req.json_object()
        raw_types = body.get("changeType")
        types = [t.strip() for t in raw_types.split(",")] if isinstance(raw_types, str) else []
        if not types or any(t not in CHANGE_TYPES for t in types):
            raise ApiError(400, f"Invalid changeType {raw_types!r}: use a comma list of "
                                "created, updated, deleted.", "InvalidRequest")
        client_state = body.get("clientState")
        if client_state is not None and (not isinstance(client_state, str)
                                         or len(client_state) > 255):
            raise ApiError(400, "clientState must be a string of at most 255 characters.",
                           "InvalidRequest")
        https = bool(self.app.faults.get("require_https"))
        url = check_address(body.get("notificationUrl"), https, "notificationUrl")
        lifecycle = body.get("lifecycleNotificationUrl")
        if lifecycle is not None:
            lifecycle = check_address(lifecycle, https, "lifecycleNotificationUrl")
        with self.app.state.lock:
            cal_id = self._resource_calendar(account, body.get("resource"))
            expiration = self._expiration(body.get("expirationDateTime"))
        # The handshake runs without the lock: the receiver may call back into the sandbox.
        for target in [url] + ([lifecycle] if lifecycle else []):
            self._validate_endpoint(target)
        state = self.app.state
        with state.lock:
            sub = Subscription(id=util.guid(), account_id=account.id,
                               resource=str(body["resource"]), calendar_id=cal_id,
                               change_types=types, notification_url=url, lifecycle_url=lifecycle,
                               expiration=expiration, client_state=client_state,
                               application_id=body.get("applicationId") or util.guid())
            state.subscriptions[sub.id] = sub
            return json_response(self.sub_json(req, sub), 201)

    def _validate_endpoint(self, url: str) -> None:
        # Spaces, ':' and '+' make an echo of the still-encoded query fail, as on real Graph.
        token = (f"Validation: Testing client application reachability for subscription "
                 f"Request-Id: {util.guid()} +{util.new_secret()[:8]}")
        target = url + ("&" if "?" in url else "?") + "validationToken=" + quote(token, safe="")
        timeout = float(self.app.faults.get("validation_timeout_seconds"))
        result = post(target, b"", {"Content-Type": "text/plain; charset=utf-8",
                                    "Content-Length": "0"}, timeout)
        if result.timed_out:
            raise ApiError(400, "Subscription validation request timed out.", "ValidationError")
        ctype = result.headers.get("content-type", "").split(";")[0].strip().lower()
        echoed = result.body.decode("utf-8", "replace")
        if result.status != 200 or ctype != "text/plain" or echoed != token:
            raise ApiError(400, VALIDATION_FAILED, "ValidationError")

    # --- manage ------------------------------------------------------------------------------

    def _live(self, account: Account, sub_id: str) -> Subscription:
        sub = self.app.state.subscriptions.get(sub_id)
        if sub is None or not sub.live(self.app.state.now()) or sub.account_id != account.id:
            raise _not_found(sub_id)
        return sub

    def list(self, req: Request) -> Response:
        account = authenticate(self.app, req, "microsoft")
        state = self.app.state
        with state.lock:
            now = state.now()
            value = [self.sub_json(req, s) for s in state.subscriptions.values()
                     if s.account_id == account.id and s.live(now)]
        return json_response({"value": value})

    def get(self, req: Request, sub_id: str) -> Response:
        account = authenticate(self.app, req, "microsoft")
        with self.app.state.lock:
            return json_response(self.sub_json(req, self._live(account, sub_id)))

    def renew(self, req: Request, sub_id: str) -> Response:
        account = authenticate(self.app, req, "microsoft")
        body = req.json_object()
        with self.app.state.lock:
            sub = self._live(account, sub_id)
            sub.expiration = self._expiration(body.get("expirationDateTime"))
            return json_response(self.sub_json(req, sub))

    def delete(self, req: Request, sub_id: str) -> Response:
        account = authenticate(self.app, req, "microsoft")
        with self.app.state.lock:
            self._live(account, sub_id).deleted = True
        return Response(204)

    def reauthorize(self, req: Request, sub_id: str) -> Response:
        account = authenticate(self.app, req, "microsoft")
        with self.app.state.lock:
            sub = self._live(account, sub_id)
            return json_response(self.sub_json(req, sub))

    # --- change notifications -------------------------------------------------------------------

    def notify(self, cal: Calendar, ev: Event, change: str) -> None:
        """Queue notifications for a change on `cal`; the caller holds the state lock."""
        state = self.app.state
        now = state.now()
        account = state.accounts[cal.account_id]
        resource = f"Users/{account.user_id}/Events/{ev.id}"
        # Real Graph sends `created` and `updated` for one create; so does the sandbox.
        kinds = ["created", "updated"] if change == "created" else [change]
        for sub in state.subscriptions.values():
            if (not sub.live(now) or sub.account_id != account.id
                    or sub.calendar_id not in (None, cal.id)):
                continue
            for kind in kinds:
                if kind not in sub.change_types:
                    continue
                item = {"id": None, "subscriptionId": sub.id,
                        "subscriptionExpirationDateTime": util.graph_time(sub.expiration),
                        "clientState": sub.client_state, "changeType": kind,
                        "resource": resource, "tenantId": account.tenant_id,
                        "resourceData": {"@odata.type": "#Microsoft.Graph.Event",
                                         "@odata.id": resource,
                                         "@odata.etag": f'W/"{ev.change_key}"', "id": ev.id}}
                self._batch(sub.notification_url, sub.id, item)

    def _batch(self, url: str, sub_id: str, item: dict[str, Any]) -> None:
        batches = self.app.state.graph_batches
        if url not in batches:
            batches[url] = []
            delay = float(self.app.faults.get("notification_batch_ms")) / 1000
            generation = self.app.state.generation
            self.app.pusher.call_later(delay, lambda: self._flush(url, generation))
        batches[url].append((sub_id, item))

    def _flush(self, url: str, generation: str) -> None:
        state = self.app.state
        with state.lock:
            if state.generation != generation:
                return
            entries = state.graph_batches.pop(url, [])
            if not entries:
                return
            sub_ids = list(dict.fromkeys(sub_id for sub_id, _ in entries))
            self._send(url, [item for _, item in entries], sub_ids, "graph:" + url)

    def _send(self, url: str, items: list[dict[str, Any]], sub_ids: list[str],
              lane: str, lifecycle: bool = False) -> None:
        state = self.app.state

        def still_live() -> bool:
            if lifecycle:
                return True
            with state.lock:
                now = state.now()
                return any(s in state.subscriptions and state.subscriptions[s].live(now)
                           for s in sub_ids)

        self.app.pusher.submit(Delivery(
            url=url, body=json.dumps({"value": items}).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
            lane=lane, stat_keys=sub_ids, policy="graph",
            timeout=float(self.app.faults.get("graph_push_timeout_seconds")),
            still_live=still_live))

    # --- lifecycle --------------------------------------------------------------------------

    def send_lifecycle(self, sub: Subscription, event: str) -> None:
        """Caller holds the state lock and has checked that the URL exists."""
        assert sub.lifecycle_url is not None
        item = {"subscriptionId": sub.id,
                "subscriptionExpirationDateTime": util.graph_time(sub.expiration),
                "tenantId": self.app.state.accounts[sub.account_id].tenant_id,
                "clientState": sub.client_state, "lifecycleEvent": event}
        self._send(sub.lifecycle_url, [item], [sub.id], "graph-lifecycle:" + sub.lifecycle_url,
                   lifecycle=True)
        if event == "subscriptionRemoved":
            sub.deleted = True

    def tick(self) -> None:
        """Lazy timer, run on every request: warn subscriptions close to their expiry."""
        minutes = float(self.app.faults.get("auto_reauthorization_minutes"))
        if minutes <= 0:
            return
        state = self.app.state
        with state.lock:
            now = state.now()
            for sub in state.subscriptions.values():
                if (sub.live(now) and sub.lifecycle_url and sub.reauth_sent_for != sub.expiration
                        and sub.expiration - now <= minutes * 60):
                    sub.reauth_sent_for = sub.expiration
                    self.send_lifecycle(sub, "reauthorizationRequired")
