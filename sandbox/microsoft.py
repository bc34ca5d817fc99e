"""Microsoft Graph v1.0: calendars, events and calendarView delta.

Delta reuses the change-sequence model of google.py: a delta token records (calendar, sequence,
epoch, window), skip tokens add the keyset cursor and the sequence the round started at.
Links are absolute URLs built from the Host the client used, so they work on any port.
Subscriptions and notifications live in graph_subscriptions.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from . import util
from .oauth import authenticate
from .state import Account, Calendar, Event
from .web import ApiError, Request, Response, Router, json_response

if TYPE_CHECKING:
    from .server import SandboxServer

BASE = "/v1.0"
_READ_ONLY = {"id", "@odata.etag", "@odata.type", "@odata.context", "changeKey",
              "createdDateTime", "lastModifiedDateTime", "iCalUId", "webLink"}
_NOT_WITH_DELTA = ("$select", "$filter", "$orderby", "$search", "$expand")
_EVENT = r"(?P<event_id>[^/]+)"
_CALID = r"(?P<calendar_id>[^/]+)"
# `delta` is an OData function: Graph also answers it called as one (`delta()`, as Graph's own
# SDKs do) and namespace-qualified (`microsoft.graph.delta()`).
_DELTA = r"(?:delta|(?:microsoft\.graph\.)?delta\(\))"


def _page_size(req: Request) -> int:
    for part in (req.header("prefer") or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize":
            try:
                return max(1, int(value.strip().strip('"')))
            except ValueError:
                break
    return 50


class GraphApi:
    def __init__(self, app: SandboxServer) -> None:
        self.app = app

    def register(self, router: Router) -> None:
        f = "graph"
        router.add("GET", BASE + "/me/calendars", self.calendars, "graph.calendars.list", f)
        router.add("POST", BASE + f"/me/calendars/{_CALID}/events", self.create,
                   "graph.events.create", f)
        router.add("POST", BASE + "/me/events", self.create, "graph.events.create", f)
        for prefix in (BASE + "/me/events/", BASE + f"/me/calendars/{_CALID}/events/"):
            router.add("GET", prefix + _EVENT, self.get, "graph.events.get", f)
            router.add("PATCH", prefix + _EVENT, self.patch, "graph.events.patch", f)
            router.add("DELETE", prefix + _EVENT, self.delete, "graph.events.delete", f)
        router.add("GET", BASE + f"/me/calendars/{_CALID}/calendarView/{_DELTA}", self.delta,
                   "graph.events.delta", f)
        router.add("GET", BASE + f"/me/calendarView/{_DELTA}", self.delta, "graph.events.delta",
                   f)

    # --- helpers ----------------------------------------------------------------------------

    def _account(self, req: Request) -> Account:
        return authenticate(self.app, req, "microsoft")

    def calendar(self, account: Account, calendar_id: str | None) -> Calendar:
        state = self.app.state
        if calendar_id is None:
            return state.primary_calendar(account)
        cal = state.calendars.get(calendar_id)
        if cal is None or cal.account_id != account.id:
            raise ApiError(404, "The specified object was not found in the store.",
                           "ErrorItemNotFound")
        return cal

    def _event(self, account: Account, event_id: str,
               calendar_id: str | None) -> tuple[Calendar, Event]:
        found = self.app.state.find_event(account, event_id)
        if (found is None or found[1].deleted
                or (calendar_id is not None and found[0].id != calendar_id)):
            raise ApiError(404, "The specified object was not found in the store.",
                           "ErrorItemNotFound")
        return found

    def event_json(self, cal: Calendar, ev: Event) -> dict[str, Any]:
        email = self.app.state.accounts[cal.account_id].email
        return {
            "@odata.type": "#microsoft.graph.event",
            "@odata.etag": f'W/"{ev.change_key}"', "id": ev.id,
            "createdDateTime": util.graph_time(ev.created),
            "lastModifiedDateTime": util.graph_time(ev.updated),
            "changeKey": ev.change_key, "categories": [], "iCalUId": f"040000008200E0{ev.id[-24:]}",
            "subject": "", "bodyPreview": "", "importance": "normal", "sensitivity": "normal",
            "isAllDay": False, "isCancelled": False, "isOrganizer": True, "showAs": "busy",
            "type": "singleInstance", "seriesMasterId": None, "recurrence": None,
            "webLink": f"https://outlook.office365.com/owa/?itemid={quote(ev.id, safe='')}",
            "location": {"displayName": ""},
            "organizer": {"emailAddress": {"name": email, "address": email}},
            **ev.fields,
        }

    # --- calendars and events -----------------------------------------------------------------

    def calendars(self, req: Request) -> Response:
        account = self._account(req)
        state = self.app.state
        with state.lock:
            value = [{"id": c.id, "name": c.name, "color": "auto", "hexColor": "",
                      "isDefaultCalendar": c.primary, "changeKey": f"ck{c.seq}",
                      "canShare": True, "canViewPrivateItems": True, "canEdit": True,
                      "isRemovable": not c.primary,
                      "owner": {"name": account.email, "address": account.email}}
                     for c in (state.calendars[i] for i in account.calendar_ids)]
        return json_response({"@odata.context": f"{req.base_url}/v1.0/$metadata#users"
                                                "('me')/calendars", "value": value})

    def create(self, req: Request, calendar_id: str | None = None) -> Response:
        account = self._account(req)
        body = req.json_object()
        for side in ("start", "end"):
            node = body.get(side)
            if not isinstance(node, dict) or util.event_time(node) is None:
                raise ApiError(400, f"'{side}' with a valid dateTime and timeZone is required.",
                               "ErrorInvalidRequest")
        fields = {k: v for k, v in body.items() if k not in _READ_ONLY}
        if fields.get("seriesMasterId") and "type" not in fields:
            fields["type"] = "exception"
        state = self.app.state
        with state.lock:
            cal = self.calendar(account, calendar_id)
            master = fields.get("seriesMasterId")
            if master and (master not in cal.events or cal.events[master].deleted):
                raise ApiError(400, "seriesMasterId does not name an event of this calendar.",
                               "ErrorInvalidRequest")
            ev = state.add_event(cal, util.graph_id(), fields)
            self.app.graph_subs.notify(cal, ev, "created")
            return json_response(self.event_json(cal, ev), 201)

    def get(self, req: Request, event_id: str, calendar_id: str | None = None) -> Response:
        account = self._account(req)
        with self.app.state.lock:
            cal, ev = self._event(account, event_id, calendar_id)
            return json_response(self.event_json(cal, ev))

    def patch(self, req: Request, event_id: str, calendar_id: str | None = None) -> Response:
        account = self._account(req)
        body = req.json_object()
        state = self.app.state
        with state.lock:
            cal, ev = self._event(account, event_id, calendar_id)
            for key, value in body.items():
                if key not in _READ_ONLY:
                    ev.fields[key] = value
            state.record_change(cal, ev)
            self.app.graph_subs.notify(cal, ev, "updated")
            return json_response(self.event_json(cal, ev))

    def delete(self, req: Request, event_id: str, calendar_id: str | None = None) -> Response:
        account = self._account(req)
        state = self.app.state
        with state.lock:
            cal, ev = self._event(account, event_id, calendar_id)
            doomed = [ev]
            if ev.fields.get("type") == "seriesMaster":
                doomed += [e for e in cal.events.values()
                           if e.fields.get("seriesMasterId") == ev.id and not e.deleted]
            for item in doomed:
                item.deleted = True
                state.record_change(cal, item)
                self.app.graph_subs.notify(cal, item, "deleted")
        return Response(204)

    # --- delta ----------------------------------------------------------------------------

    def delta(self, req: Request, calendar_id: str | None = None) -> Response:
        account = self._account(req)
        bad = [p for p in _NOT_WITH_DELTA if req.arg(p) is not None]
        if bad:
            raise ApiError(400, "The following parameters are not supported with change "
                                f"tracking over the 'CalendarView' resource: {', '.join(bad)}.",
                           "BadRequest")
        state = self.app.state
        with state.lock:
            cal = self.calendar(account, calendar_id)
            skip, delta_token = req.arg("$skiptoken"), req.arg("$deltatoken")
            if skip:
                q = self._decode(req, cal, skip, "skip")
            elif delta_token:
                d = self._decode(req, cal, delta_token, "delta")
                q = {**d, "k": "skip", "m": "incr", "since": d["seq"], "snap": cal.seq,
                     "after": 0}
            else:
                q = self._first_round(req, cal)
            return self._page(req, cal, q, _page_size(req))

    def _first_round(self, req: Request, cal: Calendar) -> dict[str, Any]:
        raw_start, raw_end = req.arg("startDateTime"), req.arg("endDateTime")
        if not raw_start or not raw_end:
            raise ApiError(400, "This request requires a time window specified by the query "
                                "string parameters StartDateTime and EndDateTime.",
                           "ErrorInvalidParameter")
        lo, hi = util.parse_instant(raw_start), util.parse_instant(raw_end)
        if lo is None or hi is None:
            raise ApiError(400, "StartDateTime and EndDateTime must be ISO 8601 date-times.",
                           "ErrorInvalidParameter")
        return {"k": "skip", "c": cal.id, "g": self.app.state.generation, "e": cal.token_epoch,
                "m": "full", "lo": lo, "hi": hi, "ws": raw_start, "we": raw_end,
                "snap": cal.seq, "after": 0}

    def _decode(self, req: Request, cal: Calendar, token: str, kind: str) -> dict[str, Any]:
        data = util.decode_token(token)
        if data is None or data.get("k") != kind or data.get("c") != cal.id:
            raise ApiError(400, "The provided state token is not valid.", "BadRequest")
        if data.get("g") != self.app.state.generation or data.get("e") != cal.token_epoch:
            # Where to start over: the same resource and window with an empty deltatoken.
            query = urlencode({"startDateTime": data.get("ws", ""),
                               "endDateTime": data.get("we", "")})
            location = f"{req.base_url}{req.path}?{query}&$deltatoken="
            raise ApiError(410, "The sync state generation is not found. Restart the "
                                "synchronization without a state token.", "syncStateNotFound",
                           headers={"Location": location})
        return data

    def _in_window(self, ev: Event, q: dict[str, Any]) -> bool:
        start = util.event_time(ev.fields.get("start"))
        end = util.event_time(ev.fields.get("end"))
        return util.overlaps(start, end, q["lo"], q["hi"])

    def _page(self, req: Request, cal: Calendar, q: dict[str, Any], limit: int) -> Response:
        if q["m"] == "incr":
            candidates = sorted((e for e in cal.events.values()
                                 if q["since"] < e.seq <= q["snap"] and e.seq > q["after"]),
                                key=lambda e: e.seq)
            cursor_of = "seq"
        else:
            candidates = [e for e in cal.events.values()
                          if q["after"] < e.created_seq <= q["snap"] and not e.deleted
                          and self._in_window(e, q)]
            cursor_of = "created_seq"
        page, more = candidates[:limit], len(candidates) > limit
        items = []
        for ev in page:
            if ev.deleted or (q["m"] == "incr" and not self._in_window(ev, q)):
                items.append({"@odata.type": "#microsoft.graph.event", "id": ev.id,
                              "@removed": {"reason": "deleted"}})
            else:
                items.append(self.event_json(cal, ev))
        link_base = f"{req.base_url}{req.path}"
        body: dict[str, Any] = {"@odata.context": f"{req.base_url}/v1.0/$metadata#Collection"
                                                  "(event)", "value": items}
        if more:
            token = util.encode_token({**q, "after": getattr(page[-1], cursor_of)})
            body["@odata.nextLink"] = f"{link_base}?$skiptoken={token}"
        else:
            token = util.encode_token({"k": "delta", "c": cal.id, "g": q["g"], "e": q["e"],
                                       "seq": q["snap"], "lo": q["lo"], "hi": q["hi"],
                                       "ws": q["ws"], "we": q["we"]})
            body["@odata.deltaLink"] = f"{link_base}?$deltatoken={token}"
        return json_response(body, headers={"Preference-Applied": f"odata.maxpagesize={limit}"})
