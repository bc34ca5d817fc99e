"""Google Calendar v3: calendarList, events (list with page/sync tokens, insert, patch, delete).

Change tracking: every modification stamps the event with the calendar's next change sequence.
A sync token records (calendar, sequence, epoch); an incremental list returns events whose
sequence is above it. Page tokens carry the query plus a keyset cursor and the sequence the
first page saw, so events changing mid-pagination are neither skipped nor lost (they come back
in the next incremental round). Watch channels live in google_push.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import util
from .oauth import authenticate
from .state import Account, Calendar, Event
from .web import ApiError, Request, Response, Router, json_response

if TYPE_CHECKING:
    from .server import SandboxServer

BASE = "/calendar/v3"
_CAL = r"/calendar/v3/calendars/(?P<calendar_id>[^/]+)"
_READ_ONLY = {"kind", "etag", "id", "htmlLink", "created", "updated", "creator", "organizer",
              "iCalUID", "sequence"}
_NOT_WITH_SYNC = ("iCalUID", "orderBy", "privateExtendedProperty", "q",
                  "sharedExtendedProperty", "timeMin", "timeMax", "updatedMin")
_CLIENT_ID = re.compile(r"[a-v0-9]{5,1024}")


def _bool_arg(req: Request, name: str) -> bool | None:
    value = req.arg(name)
    if value is None:
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ApiError(400, f"Invalid boolean value for {name}: {value}", "invalid")


def _instance_stamp(original: Any) -> str:
    """The suffix Google gives an instance id: 20240105T100000Z, or 20240105 for all-day."""
    if isinstance(original, dict) and original.get("date") and not original.get("dateTime"):
        return str(original["date"]).replace("-", "")
    ts = util.event_time(original)
    if ts is None:
        raise ApiError(400, "Invalid originalStartTime.", "invalid")
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")


def _original_from_stamp(stamp: str) -> dict[str, str]:
    if "T" in stamp:
        dt = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
        return {"dateTime": dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "timeZone": "UTC"}
    return {"date": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}"}


class GoogleApi:
    def __init__(self, app: SandboxServer) -> None:
        self.app = app

    def register(self, router: Router) -> None:
        f = "google"
        router.add("GET", BASE + "/users/me/calendarList", self.calendar_list,
                   "google.calendarList.list", f)
        router.add("GET", _CAL + "/events", self.list_events, "google.events.list", f)
        router.add("POST", _CAL + "/events", self.insert, "google.events.insert", f)
        router.add("GET", _CAL + "/events/(?P<event_id>[^/]+)", self.get,
                   "google.events.get", f)
        router.add("PATCH", _CAL + "/events/(?P<event_id>[^/]+)", self.patch,
                   "google.events.patch", f)
        router.add("DELETE", _CAL + "/events/(?P<event_id>[^/]+)", self.delete,
                   "google.events.delete", f)

    # --- helpers --------------------------------------------------------------------------

    def calendar(self, account: Account, calendar_id: str) -> Calendar:
        """The account's calendar (`primary` allowed); 404 for anything else."""
        state = self.app.state
        if calendar_id == "primary":
            return state.primary_calendar(account)
        cal = state.calendars.get(calendar_id)
        if cal is None or cal.account_id != account.id:
            raise ApiError(404, "Not Found", "notFound")
        return cal

    def event_json(self, cal: Calendar, ev: Event) -> dict[str, Any]:
        base: dict[str, Any] = {"kind": "calendar#event", "etag": ev.etag, "id": ev.id}
        if ev.cancelled:
            # Deleted events and cancelled instances only guarantee these few fields.
            out = {**base, "status": "cancelled", "updated": util.rfc3339(ev.updated)}
            for name in ("recurringEventId", "originalStartTime"):
                if name in ev.fields:
                    out[name] = ev.fields[name]
            return out
        master_id = ev.fields.get("recurringEventId")
        ical = f"{master_id or ev.id}@sandbox.google.com"
        owner = {"email": self.app.state.accounts[cal.account_id].email}
        return {
            **base, "status": "confirmed",
            "htmlLink": f"https://calendar.google.com/calendar/event?eid={ev.id}",
            "created": util.rfc3339(ev.created), "updated": util.rfc3339(ev.updated),
            "creator": {**owner, "self": True}, "organizer": {**owner, "self": True},
            "iCalUID": ical, "sequence": 0, "reminders": {"useDefault": True},
            "eventType": "default",
            **ev.fields,
        }

    def _account(self, req: Request) -> Account:
        return authenticate(self.app, req, "google")

    # --- calendarList ---------------------------------------------------------------------

    def calendar_list(self, req: Request) -> Response:
        account = self._account(req)
        state = self.app.state
        with state.lock:
            items = []
            for cal_id in account.calendar_ids:
                cal = state.calendars[cal_id]
                item: dict[str, Any] = {"kind": "calendar#calendarListEntry", "id": cal.id,
                                        "etag": f'"{cal.seq}"', "summary": cal.name,
                                        "timeZone": cal.time_zone, "accessRole": "owner"}
                if cal.primary:
                    item["primary"] = True
                items.append(item)
        return json_response({"kind": "calendar#calendarList", "etag": '"p1"',
                              "nextSyncToken": util.encode_token({"k": "cl"}), "items": items})

    # --- events.list ----------------------------------------------------------------------

    def _token_calendar(self, cal: Calendar, data: dict[str, Any] | None, kind: str) -> None:
        state = self.app.state
        if data is None or data.get("k") != kind or data.get("c") != cal.id:
            raise ApiError(400, f"Invalid {'sync' if kind == 's' else 'page'} token value.",
                           "invalid")
        if data.get("g") != state.generation or data.get("e") != cal.token_epoch:
            raise ApiError(410, "Sync token is no longer valid, a full sync is required.",
                           "fullSyncRequired", domain="calendar")

    def list_events(self, req: Request, calendar_id: str) -> Response:
        account = self._account(req)
        max_results = self._max_results(req)
        state = self.app.state
        with state.lock:
            cal = self.calendar(account, calendar_id)
            page_token = req.arg("pageToken")
            if page_token:
                q = util.decode_token(page_token)
                self._token_calendar(cal, q, "p")
                assert q is not None
            else:
                q = self._new_query(req, cal)
            return self._page(cal, q, max_results)

    @staticmethod
    def _max_results(req: Request) -> int:
        raw = req.arg("maxResults")
        if raw is None:
            return 250
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"Invalid value for maxResults: {raw}", "invalid")
        if not 1 <= value <= 2500:
            raise ApiError(400, f"Invalid value for maxResults: {raw}", "invalid")
        return value

    def _new_query(self, req: Request, cal: Calendar) -> dict[str, Any]:
        state = self.app.state
        show_deleted = _bool_arg(req, "showDeleted")
        single = _bool_arg(req, "singleEvents")
        if req.arg("orderBy") == "startTime" and not single:
            raise ApiError(400, "The requested ordering is not available for the particular "
                                "query.", "invalid")
        q: dict[str, Any] = {"k": "p", "c": cal.id, "g": state.generation, "e": cal.token_epoch,
                             "snap": cal.seq, "after": 0}
        sync_token = req.arg("syncToken")
        if sync_token is not None:
            bad = [name for name in _NOT_WITH_SYNC if req.arg(name) is not None]
            if bad:
                raise ApiError(400, f"Parameter {bad[0]} is not allowed together with "
                                    "syncToken.", "invalid")
            if show_deleted is False:
                raise ApiError(400, "showDeleted=false is not allowed together with syncToken.",
                               "invalid")
            data = util.decode_token(sync_token)
            self._token_calendar(cal, data, "s")
            assert data is not None
            q.update(m="incr", since=int(data["seq"]))
            return q
        q.update(m="full", deleted=bool(show_deleted),
                 tmin=util.parse_instant(req.arg("timeMin")),
                 tmax=util.parse_instant(req.arg("timeMax")),
                 umin=util.parse_instant(req.arg("updatedMin")),
                 text=(req.arg("q") or "").lower() or None, ical=req.arg("iCalUID"))
        for name in ("timeMin", "timeMax", "updatedMin"):
            if req.arg(name) is not None and util.parse_instant(req.arg(name)) is None:
                raise ApiError(400, f"Bad Request: invalid {name}", "badRequest")
        return q

    def _matches_full(self, cal: Calendar, ev: Event, q: dict[str, Any]) -> bool:
        if ev.created_seq > q["snap"]:
            return False
        if q.get("umin") is not None and ev.updated < q["umin"]:
            return False
        # updatedMin returns deletions since then whatever showDeleted says.
        if ev.cancelled and not q["deleted"] and q.get("umin") is None:
            return False
        start, end = util.event_time(ev.fields.get("start")), util.event_time(
            ev.fields.get("end"))
        if not util.overlaps(start, end, q.get("tmin"), q.get("tmax")):
            return False
        if q.get("text"):
            hay = " ".join(str(ev.fields.get(k, "")) for k in ("summary", "description",
                                                                "location")).lower()
            if q["text"] not in hay:
                return False
        if q.get("ical") and self.event_json(cal, ev).get("iCalUID") != q["ical"]:
            return False
        return True

    def _page(self, cal: Calendar, q: dict[str, Any], limit: int) -> Response:
        candidates: Iterable[Event]
        if q["m"] == "incr":
            # Keyset on the change sequence, in change order.
            changed = [e for e in cal.events.values() if q["since"] < e.seq <= q["snap"]]
            candidates = sorted((e for e in changed if e.seq > q["after"]),
                                key=lambda e: e.seq)
            cursor_of = "seq"
        else:
            candidates = (e for e in cal.events.values()
                          if e.created_seq > q["after"] and self._matches_full(cal, e, q))
            cursor_of = "created_seq"
        page: list[Event] = []
        more = False
        for ev in candidates:
            if len(page) == limit:
                more = True
                break
            page.append(ev)
        body: dict[str, Any] = {
            "kind": "calendar#events", "etag": f'"{cal.seq}"', "summary": cal.name,
            "updated": util.rfc3339(max((e.updated for e in cal.events.values()),
                                        default=self.app.state.now())),
            "timeZone": cal.time_zone, "accessRole": "owner", "defaultReminders": [],
            "items": [self.event_json(cal, e) for e in page],
        }
        if more:
            body["nextPageToken"] = util.encode_token({**q, "after": getattr(page[-1],
                                                                            cursor_of)})
        else:
            body["nextSyncToken"] = util.encode_token({"k": "s", "c": cal.id,
                                                       "g": q["g"], "e": q["e"],
                                                       "seq": q["snap"]})
        return json_response(body)

    # --- single events ----------------------------------------------------------------------

    def get(self, req: Request, calendar_id: str, event_id: str) -> Response:
        account = self._account(req)
        with self.app.state.lock:
            cal = self.calendar(account, calendar_id)
            ev = cal.events.get(event_id)
            if ev is None:
                raise ApiError(404, "Not Found", "notFound")
            return json_response(self.event_json(cal, ev))

    def insert(self, req: Request, calendar_id: str) -> Response:
        account = self._account(req)
        body = req.json_object()
        for side in ("start", "end"):
            if util.event_time(body.get(side)) is None:
                raise ApiError(400, f"Missing {side} time.", "required")
        fields = {k: v for k, v in body.items() if k not in _READ_ONLY}
        state = self.app.state
        with state.lock:
            cal = self.calendar(account, calendar_id)
            master_id = body.get("recurringEventId")
            if master_id:
                if master_id not in cal.events:
                    raise ApiError(404, "Not Found", "notFound")
                if "originalStartTime" not in body:
                    raise ApiError(400, "Missing originalStartTime.", "required")
                event_id = f"{master_id}_{_instance_stamp(body['originalStartTime'])}"
            elif body.get("id"):
                event_id = str(body["id"])
                if not _CLIENT_ID.fullmatch(event_id):
                    raise ApiError(400, "Invalid resource id value.", "invalid")
            else:
                event_id = util.google_id()
            if event_id in cal.events:
                raise ApiError(409, "The requested identifier already exists.", "duplicate")
            fields.setdefault("status", "confirmed")
            ev = state.add_event(cal, event_id, fields)
            self.app.google_push.notify(cal, req.base_url)
            return json_response(self.event_json(cal, ev))

    def patch(self, req: Request, calendar_id: str, event_id: str) -> Response:
        account = self._account(req)
        body = req.json_object()
        state = self.app.state
        with state.lock:
            cal = self.calendar(account, calendar_id)
            ev = cal.events.get(event_id)
            if ev is None:
                raise ApiError(404, "Not Found", "notFound")
            for key, value in body.items():
                if key in _READ_ONLY:
                    continue
                if value is None:
                    ev.fields.pop(key, None)
                else:
                    ev.fields[key] = value
            # Patching a deleted event back to confirmed undeletes it, as Google allows.
            ev.deleted = ev.fields.get("status") == "cancelled"
            state.record_change(cal, ev)
            self.app.google_push.notify(cal, req.base_url)
            return json_response(self.event_json(cal, ev))

    def delete(self, req: Request, calendar_id: str, event_id: str) -> Response:
        account = self._account(req)
        state = self.app.state
        with state.lock:
            cal = self.calendar(account, calendar_id)
            ev = cal.events.get(event_id)
            if ev is None:
                ev = self._materialise_instance(cal, event_id)
            elif ev.cancelled:
                raise ApiError(410, "Resource has been deleted", "deleted")
            self._cancel(cal, ev)
            if ev.fields.get("recurrence"):
                for other in list(cal.events.values()):
                    if other.fields.get("recurringEventId") == ev.id and not other.cancelled:
                        self._cancel(cal, other)
            self.app.google_push.notify(cal, req.base_url)
        return Response(204)

    def _cancel(self, cal: Calendar, ev: Event) -> None:
        ev.fields["status"] = "cancelled"
        ev.deleted = True
        self.app.state.record_change(cal, ev)

    def _materialise_instance(self, cal: Calendar, event_id: str) -> Event:
        """DELETE of `{master}_{stamp}` for a recurring master cancels that occurrence."""
        master_id, _, stamp = event_id.rpartition("_")
        master = cal.events.get(master_id)
        if not (master and master.fields.get("recurrence") and not master.cancelled
                and re.fullmatch(r"\d{8}(T\d{6}Z)?", stamp)):
            raise ApiError(404, "Not Found", "notFound")
        fields = {"recurringEventId": master_id, "originalStartTime": _original_from_stamp(stamp),
                  "status": "confirmed"}
        return self.app.state.add_event(cal, event_id, fields)


def resource_uri(base_url: str, calendar_id: str) -> str:
    return f"{base_url}{BASE}/calendars/{quote(calendar_id, safe='')}/events?alt=json"
