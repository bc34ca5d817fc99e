"""Microsoft Graph v1.0 client: calendars, calendarView delta, subscriptions.
Protocol facts: shared/provider-protocols.md section B.

Time zones: every delta request asks for UTC (``Prefer: outlook.timezone="UTC"``), so real
Graph answers in UTC. An item that still names another zone is read with that IANA zone, or a
common Windows zone name mapped to IANA; any other zone makes the item a ``BadEvent`` (a wrong
time would be worse than a skipped, recorded event).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone

from apps.calendars.models import Calendar
from apps.calendars.providers.authorized import AuthorizedClient
from apps.calendars.providers.base import ChangePage, EventChange, RemoteCalendar, WatchResult
from apps.calendars.providers.errors import (
    BadEvent,
    ClientError,
    CursorExpired,
    NotFound,
    ProviderError,
    Transient,
)

# Graph error codes meaning "this delta token is no longer valid: start a new round".
CURSOR_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
MAX_PAGES = 5000
_UTC_NAMES = frozenset({"utc", "etc/utc", "gmt", "etc/gmt", "z", "coordinated universal time",
                        "tzone://microsoft/utc"})
# The common Windows zone names (CLDR windowsZones, territory 001).
WINDOWS_ZONES = {
    "GMT Standard Time": "Europe/London", "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin", "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw", "E. Europe Standard Time":
    "Europe/Chisinau", "FLE Standard Time": "Europe/Kiev", "GTB Standard Time": "Europe/Bucharest",
    "Russian Standard Time": "Europe/Moscow", "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg", "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Kolkata", "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore", "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul", "AUS Eastern Standard Time": "Australia/Sydney",
    "New Zealand Standard Time": "Pacific/Auckland", "Atlantic Standard Time": "America/Halifax",
    "Eastern Standard Time": "America/New_York", "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver", "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles", "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "E. South America Standard Time": "America/Sao_Paulo",
    "SA Pacific Standard Time": "America/Bogota",
}


class MicrosoftClient(AuthorizedClient):
    provider = "microsoft"
    label = "Microsoft"

    def _api(self, path: str) -> str:
        return f"{settings.MS_GRAPH_BASE_URL}/v1.0{path}"

    # --- errors -------------------------------------------------------------------------------
    def error_details(self, error: dict[str, Any]) -> tuple[set[str], str]:
        code = str(error.get("code") or "")
        return ({code} if code else set()), str(error.get("message") or "")

    def provider_error(self, status: int, reasons: set[str], operation: str, message: str,
                       retry_after: float | None) -> ProviderError | None:
        expired = {r.lower() for r in reasons} & CURSOR_CODES
        if expired or (status == 410 and operation == "events.delta"):
            return CursorExpired(message, status_code=status)
        if status == 410:
            return NotFound(message, status_code=status)
        return None

    # --- calendars and events -----------------------------------------------------------------
    def list_calendars(self) -> list[RemoteCalendar]:
        found: list[RemoteCalendar] = []
        url = self._api("/me/calendars")
        for _ in range(MAX_PAGES):
            data = self.send_json("GET", self._own_link(url), "calendars.list")
            for item in data.get("value") or []:
                if not isinstance(item, dict) or not item.get("id"):
                    continue
                owner = item.get("owner") if isinstance(item.get("owner"), dict) else {}
                found.append(RemoteCalendar(
                    id=str(item["id"]), name=str(item.get("name") or item["id"]),
                    primary=bool(item.get("isDefaultCalendar")),
                    owner_email=str(owner.get("address") or ""),
                ))
            url = data.get("@odata.nextLink") or ""
            if not url:
                return found
        raise Transient("Microsoft calendars.list did not stop paginating")

    def list_changes(self, calendar: Calendar, cursor: str) -> ChangePage:
        if not cursor:
            return self.full_sync(calendar)
        if not cursor.startswith(self._api("/")):
            # Stored against another Graph host (base URL changed): the link is useless there
            # and must not receive our token. A new round is the only way forward.
            raise CursorExpired("Microsoft delta link points at another host; resync")
        return self._delta(cursor, full=False)

    def full_sync(self, calendar: Calendar) -> ChangePage:
        now = timezone.now()
        window = {
            "startDateTime": _iso_z(now - timedelta(days=settings.SYNC_WINDOW_PAST_DAYS)),
            "endDateTime": _iso_z(now + timedelta(days=settings.SYNC_WINDOW_FUTURE_DAYS)),
        }
        cal_id = quote(calendar.provider_calendar_id, safe="")
        url = self._api(f"/me/calendars/{cal_id}/calendarView/delta") + "?" + urlencode(window)
        return self._delta(url, full=True)

    def _delta(self, url: str, *, full: bool) -> ChangePage:
        headers = {"Prefer": f'odata.maxpagesize={settings.MS_DELTA_PAGE_SIZE}, '
                             'outlook.timezone="UTC"'}
        items: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            data = self.send_json("GET", self._own_link(url), "events.delta", headers=headers)
            items.extend(i for i in data.get("value") or [] if isinstance(i, dict))
            if data.get("@odata.nextLink"):
                url = str(data["@odata.nextLink"])
                continue
            if data.get("@odata.deltaLink"):
                # The whole URL is the cursor [dq].
                return ChangePage(items=items, next_cursor=str(data["@odata.deltaLink"]),
                                  full=full)
            raise Transient("Microsoft events.delta page had neither nextLink nor deltaLink")
        raise Transient("Microsoft events.delta did not stop paginating")

    def _own_link(self, url: str) -> str:
        """Links from Graph carry our bearer token when followed: only to Graph itself."""
        if not url.startswith(self._api("/")):
            raise ClientError("Microsoft returned a link outside the Graph base URL")
        return url

    def parse_event(self, item: dict[str, Any]) -> EventChange:
        event_id = item.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise BadEvent("Microsoft event without an id")
        etag = str(item.get("@odata.etag") or "")
        if "@removed" in item:
            return EventChange(provider_event_id=event_id, deleted=True, etag=etag, raw=item)
        series = str(item.get("seriesMasterId") or "")
        kind = item.get("type") or "singleInstance"
        is_instance = bool(series) or kind in ("occurrence", "exception")
        if item.get("isCancelled") and not is_instance:
            # A cancelled single event or whole series is gone, as Google's cancelled non-instance.
            return EventChange(provider_event_id=event_id, deleted=True, etag=etag, raw=item)
        location = item.get("location") if isinstance(item.get("location"), dict) else {}
        if item.get("isCancelled"):
            status = "cancelled"
        elif item.get("showAs") == "tentative":
            status = "tentative"
        else:
            status = "confirmed"
        return EventChange(
            provider_event_id=event_id, deleted=False, etag=etag, status=status,
            summary=str(item.get("subject") or ""),
            location=str(location.get("displayName") or ""),
            start=_graph_time(item.get("start"), event_id, "start"),
            end=_graph_time(item.get("end"), event_id, "end"),
            all_day=bool(item.get("isAllDay")), recurring_event_id=series, raw=item,
        )

    # --- subscriptions ------------------------------------------------------------------------
    def watch(self, calendar: Calendar, *, channel_id: str, token: str, address: str,
              lifecycle_address: str, expires_at: datetime) -> WatchResult:
        resource = f"/me/calendars/{calendar.provider_calendar_id}/events"
        body = {"changeType": "created,updated,deleted", "notificationUrl": address,
                "resource": resource, "expirationDateTime": _iso_z(expires_at),
                "clientState": token}
        if lifecycle_address:
            body["lifecycleNotificationUrl"] = lifecycle_address
        data = self.send_json("POST", self._api("/subscriptions"), "subscriptions.create",
                              json=body)
        if not data.get("id"):
            raise Transient("Microsoft subscriptions.create answered without an id")
        return WatchResult(
            channel_id=str(data["id"]), resource_id=str(data.get("resource") or resource),
            resource_uri=str(data.get("resource") or resource),
            expires_at=_parse_instant(data.get("expirationDateTime")) or expires_at,
        )

    def renew(self, channel_id: str, expires_at: datetime) -> datetime:
        data = self.send_json("PATCH", self._subscription_url(channel_id), "subscriptions.renew",
                              json={"expirationDateTime": _iso_z(expires_at)})
        return _parse_instant(data.get("expirationDateTime")) or expires_at

    def stop(self, channel_id: str, resource_id: str) -> None:
        self.send("DELETE", self._subscription_url(channel_id), "subscriptions.delete")

    def reauthorize(self, channel_id: str) -> None:
        self.send("POST", self._subscription_url(channel_id) + "/reauthorize",
                  "subscriptions.reauthorize")

    def _subscription_url(self, subscription_id: str) -> str:
        return self._api(f"/subscriptions/{quote(subscription_id, safe='')}")


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _zone(name: str, event_id: str) -> Any:
    if name.strip().lower() in _UTC_NAMES or not name.strip():
        return UTC
    try:
        return ZoneInfo(WINDOWS_ZONES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError):
        raise BadEvent(f"Microsoft event {event_id} uses an unknown time zone") from None


def _graph_time(node: Any, event_id: str, side: str) -> datetime:
    if not isinstance(node, dict) or not node.get("dateTime"):
        raise BadEvent(f"Microsoft event {event_id} has no {side}")
    try:
        # Graph sends seven fractional digits; fromisoformat (3.11) reads them.
        value = datetime.fromisoformat(str(node["dateTime"]).replace("Z", "+00:00"))
    except ValueError:
        raise BadEvent(f"Microsoft event {event_id} has an unreadable {side}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_zone(str(node.get("timeZone") or ""), event_id))
    return value
