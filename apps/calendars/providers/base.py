"""The one interface both providers implement.

Clients are built for an account (``get_client(account)``), refresh its access token when
needed (saving a rotated refresh token), and raise the typed errors of ``errors.py``. Change
listing returns raw items plus the next cursor; ``parse_event`` turns one raw item into an
``EventChange`` and may raise ``BadEvent`` so that one broken event never blocks a calendar.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.calendars.models import Calendar, CalendarAccount


@dataclass(frozen=True)
class RemoteCalendar:
    id: str
    name: str
    timezone: str = ""
    primary: bool = False
    # The mailbox that owns it, when the provider says (identifies the account on connect).
    owner_email: str = ""


@dataclass(frozen=True)
class EventChange:
    """One provider item, normalised. ``deleted`` means: remove it locally."""

    provider_event_id: str
    deleted: bool
    etag: str = ""
    status: str = "confirmed"  # confirmed | tentative | cancelled (cancelled instance kept)
    summary: str = ""
    location: str = ""
    start: datetime | None = None
    end: datetime | None = None
    all_day: bool = False
    recurring_event_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChangePage:
    """Everything returned since a cursor (all pages followed) and the cursor to store next."""

    items: list[dict[str, Any]]
    next_cursor: str
    full: bool  # True when this is a full listing (local events not in it are to be deleted)


@dataclass(frozen=True)
class WatchResult:
    channel_id: str
    resource_id: str
    resource_uri: str
    expires_at: datetime


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    code_verifier: str


class ProviderClient(ABC):
    provider: str = ""

    def __init__(self, account: CalendarAccount) -> None:
        self.account = account

    # --- calendars and events ---------------------------------------------------------------
    @abstractmethod
    def list_calendars(self) -> list[RemoteCalendar]: ...

    @abstractmethod
    def list_changes(self, calendar: Calendar, cursor: str) -> ChangePage:
        """Changes since ``cursor`` (every page). Raises ``CursorExpired``."""

    @abstractmethod
    def full_sync(self, calendar: Calendar) -> ChangePage:
        """Every live event (every page) and a fresh cursor."""

    @abstractmethod
    def parse_event(self, item: dict[str, Any]) -> EventChange:
        """Normalise one raw item. Raises ``BadEvent``."""

    # --- push subscriptions -----------------------------------------------------------------
    @abstractmethod
    def watch(self, calendar: Calendar, *, channel_id: str, token: str, address: str,
              lifecycle_address: str, expires_at: datetime) -> WatchResult:
        """Google events.watch (``channel_id`` is ours) or Graph POST /subscriptions
        (``channel_id`` ignored; Graph returns the id)."""

    @abstractmethod
    def renew(self, channel_id: str, expires_at: datetime) -> datetime:
        """Graph PATCH; Google raises ``NotImplementedError`` (channels are replaced)."""

    @abstractmethod
    def stop(self, channel_id: str, resource_id: str) -> None:
        """Google channels.stop / Graph DELETE. ``NotFound`` when already gone."""

    def reauthorize(self, channel_id: str) -> None:  # noqa: B027 - optional, no-op default
        """Graph POST /subscriptions/{id}/reauthorize. No-op for Google."""
        return None

    # --- tokens -----------------------------------------------------------------------------
    @abstractmethod
    def refresh_access_token(self) -> None:
        """Refresh and save the account's tokens. Raises ``AuthRevoked`` on invalid_grant."""
