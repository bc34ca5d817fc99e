"""Google Calendar v3 client: calendarList, events.list with sync tokens, events.watch,
channels.stop. Protocol facts: shared/provider-protocols.md section A."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone

from apps.calendars.models import Calendar
from apps.calendars.providers.authorized import AuthorizedClient
from apps.calendars.providers.base import ChangePage, EventChange, RemoteCalendar, WatchResult
from apps.calendars.providers.errors import (
    BadEvent,
    CursorExpired,
    NotFound,
    ProviderError,
    RateLimited,
    Transient,
)

# 403 reasons that are quota/rate problems, not permission problems [err][quota].
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
# A runaway-pagination guard, far above any real calendar (2,500 x 250 events).
MAX_PAGES = 2500


class GoogleClient(AuthorizedClient):
    provider = "google"
    label = "Google"

    # --- URLs ---------------------------------------------------------------------------------
    def _api(self, path: str) -> str:
        return f"{settings.GOOGLE_API_BASE_URL}/calendar/v3{path}"

    def _events_url(self, calendar: Calendar) -> str:
        return self._api(f"/calendars/{quote(calendar.provider_calendar_id, safe='')}/events")

    # --- errors -------------------------------------------------------------------------------
    def error_details(self, error: dict[str, Any]) -> tuple[set[str], str]:
        reasons = {str(e.get("reason")) for e in error.get("errors") or []
                   if isinstance(e, dict) and e.get("reason")}
        return reasons, str(error.get("message") or "")

    def provider_error(self, status: int, reasons: set[str], operation: str, message: str,
                       retry_after: float | None) -> ProviderError | None:
        if status == 403 and reasons & RATE_LIMIT_REASONS:  # quota, not permission [err]
            return RateLimited(message, status_code=status, retry_after=retry_after)
        if status == 410:
            # `deleted`: the event is already gone; anything else on a list means resync.
            if "deleted" in reasons:
                return NotFound(message, status_code=status)
            return CursorExpired(message, status_code=status)
        return None

    # --- calendars and events -----------------------------------------------------------------
    def list_calendars(self) -> list[RemoteCalendar]:
        found: list[RemoteCalendar] = []
        page_token = ""
        for _ in range(MAX_PAGES):
            params = {"maxResults": 250, **({"pageToken": page_token} if page_token else {})}
            data = self.send_json("GET", self._api("/users/me/calendarList"),
                                  "calendarList.list", params=params)
            for item in data.get("items") or []:
                if not isinstance(item, dict) or not item.get("id"):
                    continue
                primary = bool(item.get("primary"))
                cal_id = str(item["id"])
                found.append(RemoteCalendar(
                    id=cal_id,
                    name=str(item.get("summaryOverride") or item.get("summary") or cal_id),
                    timezone=str(item.get("timeZone") or ""),
                    primary=primary,
                    # A primary calendar's id is its owner's address.
                    owner_email=cal_id if primary and "@" in cal_id else "",
                ))
            page_token = data.get("nextPageToken") or ""
            if not page_token:
                return found
        raise Transient("Google calendarList.list did not stop paginating")

    def list_changes(self, calendar: Calendar, cursor: str) -> ChangePage:
        if not cursor:
            return self.full_sync(calendar)
        return self._list_events(calendar, sync_token=cursor)

    def full_sync(self, calendar: Calendar) -> ChangePage:
        return self._list_events(calendar, sync_token="")

    def _list_events(self, calendar: Calendar, sync_token: str) -> ChangePage:
        # The incremental query must repeat the full sync's parameters exactly [sync].
        params: dict[str, Any] = {"maxResults": settings.GOOGLE_EVENTS_PAGE_SIZE,
                                  "showDeleted": "true", "singleEvents": "false"}
        if sync_token:
            params["syncToken"] = sync_token
        items: list[dict[str, Any]] = []
        page_token = ""
        for _ in range(MAX_PAGES):
            query = {**params, **({"pageToken": page_token} if page_token else {})}
            data = self.send_json("GET", self._events_url(calendar), "events.list", params=query)
            items.extend(i for i in data.get("items") or [] if isinstance(i, dict))
            page_token = data.get("nextPageToken") or ""
            if not page_token:  # nextSyncToken only comes on the last page
                return ChangePage(items=items, next_cursor=str(data.get("nextSyncToken") or ""),
                                  full=not sync_token)
        raise Transient("Google events.list did not stop paginating")

    def parse_event(self, item: dict[str, Any]) -> EventChange:
        event_id = item.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise BadEvent("Google event without an id")
        etag = str(item.get("etag") or "")
        recurring = str(item.get("recurringEventId") or "")
        status = item.get("status") or "confirmed"
        if status == "cancelled" and not recurring:
            return EventChange(provider_event_id=event_id, deleted=True, etag=etag, raw=item)
        if status == "cancelled":
            # A cancelled instance of a live series: kept (hidden), not a deletion. Only id,
            # recurringEventId and originalStartTime are guaranteed.
            start, all_day = _optional_time(item.get("start") or item.get("originalStartTime"),
                                            event_id)
            end, _ = _optional_time(item.get("end"), event_id)
        else:
            start, all_day = _event_time(item.get("start"), event_id, "start")
            end, _ = _event_time(item.get("end"), event_id, "end")
        location = item.get("location") or ""
        return EventChange(
            provider_event_id=event_id, deleted=False, etag=etag,
            status=status if status in ("confirmed", "tentative", "cancelled") else "confirmed",
            summary=str(item.get("summary") or ""),
            location=location if isinstance(location, str) else "",
            start=start, end=end, all_day=all_day, recurring_event_id=recurring, raw=item,
        )

    # --- push channels ------------------------------------------------------------------------
    def watch(self, calendar: Calendar, *, channel_id: str, token: str, address: str,
              lifecycle_address: str, expires_at: datetime) -> WatchResult:
        ttl = max(1, int((expires_at - timezone.now()).total_seconds()))
        body = {"id": channel_id, "type": "web_hook", "address": address, "token": token,
                "params": {"ttl": str(ttl)}}
        data = self.send_json("POST", self._events_url(calendar) + "/watch", "events.watch",
                              json=body)
        resource_id = data.get("resourceId")
        if not resource_id:
            raise Transient("Google events.watch answered without a resourceId")
        return WatchResult(
            channel_id=str(data.get("id") or channel_id),
            resource_id=str(resource_id),
            resource_uri=str(data.get("resourceUri") or ""),
            expires_at=_from_ms(data.get("expiration")) or expires_at,
        )

    def renew(self, channel_id: str, expires_at: datetime) -> datetime:
        raise NotImplementedError("Google channels cannot be renewed; watch with a new id")

    def stop(self, channel_id: str, resource_id: str) -> None:
        self.send("POST", self._api("/channels/stop"), "channels.stop",
                  json={"id": channel_id, "resourceId": resource_id})


def _event_time(node: Any, event_id: str, side: str) -> tuple[datetime, bool]:
    """(aware datetime, all_day). All-day dates become midnight UTC of that date (the exact
    date stays in ``raw``)."""
    if not isinstance(node, dict):
        raise BadEvent(f"Google event {event_id} has no {side}")
    try:
        if node.get("dateTime"):
            value = datetime.fromisoformat(str(node["dateTime"]).replace("Z", "+00:00"))
            if value.tzinfo is None:
                if not node.get("timeZone"):
                    raise ValueError("a dateTime without offset or timeZone")
                value = value.replace(tzinfo=ZoneInfo(str(node["timeZone"])))
            return value, False
        if node.get("date"):
            day = date.fromisoformat(str(node["date"]))
            return datetime(day.year, day.month, day.day, tzinfo=UTC), True
    except (ValueError, TypeError, ZoneInfoNotFoundError) as exc:
        raise BadEvent(f"Google event {event_id} has an unreadable {side}: {exc}") from None
    raise BadEvent(f"Google event {event_id} has neither {side}.dateTime nor {side}.date")


def _optional_time(node: Any, event_id: str) -> tuple[datetime | None, bool]:
    if not node:
        return None, False
    return _event_time(node, event_id, "time")


def _from_ms(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
