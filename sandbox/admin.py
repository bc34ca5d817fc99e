"""The `/_sandbox/*` admin API: accounts, state, faults (and their one-shot actions), clock,
reset. Never faulted and never authenticated: it only ever listens on a developer's machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import util
from .faults import FaultError
from .graph_subscriptions import LIFECYCLE_EVENTS
from .oauth import issue_tokens
from .web import ApiError, Request, Response, Router, json_response

if TYPE_CHECKING:
    from .server import SandboxServer


class Admin:
    def __init__(self, app: SandboxServer) -> None:
        self.app = app

    def register(self, router: Router) -> None:
        router.add("POST", "/_sandbox/reset", self.reset)
        router.add("GET", "/_sandbox/health", self.health)
        router.add("GET", "/_sandbox/clock", self.get_clock)
        router.add("POST", "/_sandbox/clock", self.set_clock)
        router.add("POST", "/_sandbox/accounts", self.create_account)
        router.add("GET", "/_sandbox/state", self.dump)
        router.add("GET", "/_sandbox/faults", self.get_faults)
        router.add("POST", "/_sandbox/faults", self.set_faults)

    def reset(self, req: Request) -> Response:
        self.app.reset()
        return json_response({"status": "reset"})

    def health(self, req: Request) -> Response:
        return json_response({"status": "ok"})

    # --- clock ------------------------------------------------------------------------------

    def get_clock(self, req: Request) -> Response:
        state = self.app.state
        with state.lock:
            return json_response({"now": state.now(), "offset_seconds": state.clock_offset})

    def set_clock(self, req: Request) -> Response:
        body = req.json_object()
        state = self.app.state
        with state.lock:
            for name in ("offset_seconds", "advance_seconds"):
                value = body.get(name)
                if value is not None and (isinstance(value, bool)
                                          or not isinstance(value, int | float)):
                    raise ApiError(400, f"{name} must be a number")
            if body.get("offset_seconds") is not None:
                state.clock_offset = float(body["offset_seconds"])
            elif body.get("advance_seconds") is not None:
                state.clock_offset += float(body["advance_seconds"])
            else:
                raise ApiError(400, "send offset_seconds or advance_seconds")
        self.app.graph_subs.tick()
        return self.get_clock(req)

    # --- accounts -----------------------------------------------------------------------------

    def create_account(self, req: Request) -> Response:
        body = req.json_object()
        provider, email = body.get("provider"), body.get("email")
        if provider not in ("google", "microsoft"):
            raise ApiError(400, "provider must be 'google' or 'microsoft'")
        if not isinstance(email, str) or "@" not in email:
            raise ApiError(400, "email must be an e-mail address")
        wanted = body.get("calendars", 1)
        if isinstance(wanted, int) and not isinstance(wanted, bool) and wanted >= 1:
            first = email if provider == "google" else "Calendar"
            names = [first] + [f"Calendar {i}" for i in range(2, wanted + 1)]
        elif (isinstance(wanted, list) and wanted
              and all(isinstance(n, str) and n for n in wanted)):
            names = list(wanted)
        else:
            raise ApiError(400, "calendars must be a positive integer or a list of names")
        state = self.app.state
        with state.lock:
            account = state.account_by_email(provider, email)
            created = account is None
            if account is None:
                account = state.create_account(provider, email, names)
            tokens = issue_tokens(self.app, account, None, "sandbox")
            calendars = [{"id": c, "name": state.calendars[c].name}
                         for c in account.calendar_ids]
        return json_response({"account_id": account.id, "provider": provider,
                              "email": account.email, "refresh_token": tokens["refresh_token"],
                              "access_token": tokens["access_token"],
                              "expires_in": tokens["expires_in"], "calendars": calendars,
                              "created": created}, 201)

    # --- faults -------------------------------------------------------------------------------

    def get_faults(self, req: Request) -> Response:
        return json_response(self.app.faults.snapshot())

    def set_faults(self, req: Request) -> Response:
        body = req.json_object()
        with self.app.state.lock:
            # Check the one-shot actions before touching anything, so a 400 changes nothing.
            actions = self._check_actions(body)
            try:
                self.app.faults.update(body)
            except FaultError as exc:
                raise ApiError(400, str(exc))
            applied = self._apply_actions(actions)
        return json_response({**self.app.faults.snapshot(), "applied": applied})

    def _check_actions(self, body: dict[str, Any]) -> dict[str, Any]:
        state = self.app.state
        out: dict[str, Any] = {}
        if "revoke" in body:
            emails = body["revoke"]
            if not isinstance(emails, list):
                raise ApiError(400, "revoke must be a list of e-mail addresses")
            accounts = [a for a in state.accounts.values()
                        if a.email.lower() in {str(e).lower() for e in emails}]
            known = {a.email.lower() for a in accounts}
            missing = [e for e in emails if str(e).lower() not in known]
            if missing:
                raise ApiError(400, f"unknown accounts: {missing}")
            out["revoke"] = accounts
        if "expire_sync_tokens" in body:
            value = body["expire_sync_tokens"]
            if value is True:
                out["expire_sync_tokens"] = list(state.calendars)
            elif isinstance(value, list):
                unknown = [c for c in value if c not in state.calendars]
                if unknown:
                    raise ApiError(400, f"unknown calendars: {unknown}")
                out["expire_sync_tokens"] = list(value)
            elif value is not False:
                raise ApiError(400, "expire_sync_tokens must be true or a list of calendar ids")
        if "expire_subscription" in body:
            ids = body["expire_subscription"]
            if not isinstance(ids, list):
                raise ApiError(400, "expire_subscription must be a list of ids")
            channel_ids = {c.id for c in state.channels}
            unknown = [i for i in ids if i not in channel_ids and i not in state.subscriptions]
            if unknown:
                raise ApiError(400, f"unknown channels or subscriptions: {unknown}")
            out["expire_subscription"] = ids
        if "lifecycle" in body:
            out["lifecycle"] = self._check_lifecycle(body["lifecycle"])
        return out

    def _check_lifecycle(self, value: Any) -> list[tuple[str, str]]:
        if not isinstance(value, list):
            raise ApiError(400, "lifecycle must be a list of {subscription_id, event}")
        checked = []
        for entry in value:
            if not isinstance(entry, dict):
                raise ApiError(400, "lifecycle entries must be objects")
            sub = self.app.state.subscriptions.get(entry.get("subscription_id", ""))
            event = entry.get("event")
            if sub is None:
                raise ApiError(400, f"unknown subscription {entry.get('subscription_id')!r}")
            if event not in LIFECYCLE_EVENTS:
                raise ApiError(400, f"event must be one of {', '.join(LIFECYCLE_EVENTS)}")
            if not sub.lifecycle_url:
                raise ApiError(400, f"subscription {sub.id} has no lifecycleNotificationUrl")
            checked.append((sub.id, event))
        return checked

    def _apply_actions(self, actions: dict[str, Any]) -> dict[str, Any]:
        state = self.app.state
        applied: dict[str, Any] = {}
        for account in actions.get("revoke", []):
            state.revoke_account(account.id)
        if "revoke" in actions:
            applied["revoked"] = [a.email for a in actions["revoke"]]
        for cal_id in actions.get("expire_sync_tokens", []):
            state.calendars[cal_id].token_epoch += 1
        if "expire_sync_tokens" in actions:
            applied["expired_sync_tokens"] = actions["expire_sync_tokens"]
        now = state.now()
        for target in actions.get("expire_subscription", []):
            for ch in state.channels:
                if ch.id == target and ch.live(now):
                    ch.expiration_ms = int(now * 1000)
            sub = state.subscriptions.get(target)
            if sub is not None and sub.live(now):
                sub.expiration = now
        if "expire_subscription" in actions:
            applied["expired"] = actions["expire_subscription"]
        for sub_id, event in actions.get("lifecycle", []):
            self.app.graph_subs.send_lifecycle(state.subscriptions[sub_id], event)
        if "lifecycle" in actions:
            applied["lifecycle"] = [{"subscription_id": s, "event": e}
                                    for s, e in actions["lifecycle"]]
        return applied

    # --- state dump ---------------------------------------------------------------------------

    def dump(self, req: Request) -> Response:
        state = self.app.state
        stats, log = self.app.pusher.summary()
        with state.lock:
            now = state.now()
            return json_response({
                "now": now, "offset_seconds": state.clock_offset,
                "accounts": [self._account_json(a.id) for a in state.accounts.values()],
                "calendars": [{"id": c.id, "account_id": c.account_id, "provider": c.provider,
                               "name": c.name, "primary": c.primary,
                               "resource_id": c.resource_id if c.provider == "google" else None,
                               "change_seq": c.seq, "token_epoch": c.token_epoch}
                              for c in state.calendars.values()],
                "events": {c.id: [self._event_json(c.id, e.id) for e in c.events.values()]
                           for c in state.calendars.values()},
                "google_channels": [
                    {"id": ch.id, "resourceId": ch.resource_id, "resourceUri": ch.resource_uri,
                     "address": ch.address, "calendar": ch.calendar_id,
                     "account_id": ch.account_id, "expiration": ch.expiration_ms,
                     "expired": ch.expired(now), "stopped": ch.stopped, "live": ch.live(now),
                     "token_set": ch.token is not None, "message_number": ch.message_number}
                    for ch in state.channels],
                "graph_subscriptions": [
                    {"id": s.id, "resource": s.resource, "calendar": s.calendar_id,
                     "account_id": s.account_id, "changeType": ",".join(s.change_types),
                     "notificationUrl": s.notification_url,
                     "lifecycleNotificationUrl": s.lifecycle_url,
                     "expirationDateTime": util.graph_time(s.expiration),
                     "clientState": s.client_state is not None, "expired": s.expired(now),
                     "deleted": s.deleted, "live": s.live(now)}
                    for s in state.subscriptions.values()],
                "counters": dict(state.counters),
                "deliveries": stats,
                "delivery_log": log,
            })

    def _account_json(self, account_id: str) -> dict[str, Any]:
        state = self.app.state
        a = state.accounts[account_id]
        now = state.now()
        return {"account_id": a.id, "provider": a.provider, "email": a.email,
                "user_id": a.user_id, "tenant_id": a.tenant_id, "calendars": a.calendar_ids,
                "live_refresh_tokens": sum(1 for g in state.refresh_tokens.values()
                                           if g.account_id == a.id),
                "live_access_tokens": sum(1 for g in state.access_tokens.values()
                                          if g.account_id == a.id and g.expires_at is not None
                                          and g.expires_at > now)}

    def _event_json(self, cal_id: str, event_id: str) -> dict[str, Any]:
        cal = self.app.state.calendars[cal_id]
        ev = cal.events[event_id]
        if cal.provider == "google":
            out = self.app.google.event_json(cal, ev)
            if ev.cancelled:  # the admin view keeps the fields a deleted event had
                out = {**ev.fields, **out}
        else:
            out = self.app.graph.event_json(cal, ev)
        return {**out, "_deleted": ev.deleted, "_seq": ev.seq}
