"""The in-memory world: accounts, calendars, events, tokens, channels, subscriptions, sinks.

One re-entrant lock guards all of it; handlers hold it while they read or change anything and
never while they wait on the network. Time is always `now()`, the virtual clock.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from . import util


@dataclass
class Account:
    id: str
    provider: str  # "google" | "microsoft"
    email: str
    user_id: str  # Graph's user GUID (used in notification resources)
    tenant_id: str
    calendar_ids: list[str] = field(default_factory=list)


@dataclass
class Event:
    id: str
    calendar_id: str
    fields: dict[str, Any]  # what the client wrote (provider-shaped), read-only fields removed
    created: float
    updated: float
    created_seq: int  # the calendar's change sequence when it was created (keyset paging)
    seq: int  # the calendar's change sequence of its last change (incremental sync)
    etag: str
    change_key: str
    deleted: bool = False  # Google: status cancelled by DELETE; Graph: removed

    @property
    def cancelled(self) -> bool:
        return self.deleted or self.fields.get("status") == "cancelled"


@dataclass
class Calendar:
    id: str
    account_id: str
    provider: str
    name: str
    primary: bool
    time_zone: str
    resource_id: str  # Google's opaque, stable resourceId for watch channels
    events: dict[str, Event] = field(default_factory=dict)  # insertion = creation order
    seq: int = 0
    token_epoch: int = 0  # bumped to invalidate every sync/delta token issued so far


@dataclass
class Grant:
    token: str
    kind: str  # "refresh" | "access"
    account_id: str
    provider: str
    client_id: str | None
    scope: str
    expires_at: float | None = None  # access tokens only


@dataclass
class AuthCode:
    code: str
    provider: str
    account_id: str
    client_id: str | None
    redirect_uri: str
    scope: str
    challenge: str | None
    challenge_method: str | None
    expires_at: float
    used: bool = False


@dataclass
class Channel:
    """A Google watch channel."""

    id: str
    resource_id: str
    resource_uri: str
    calendar_id: str
    account_id: str
    address: str
    token: str | None
    expiration_ms: int
    stopped: bool = False
    message_number: int = 0

    def expired(self, now: float) -> bool:
        return now * 1000 >= self.expiration_ms

    def live(self, now: float) -> bool:
        return not self.stopped and not self.expired(now)


@dataclass
class Subscription:
    """A Graph change-notification subscription."""

    id: str
    account_id: str
    resource: str
    calendar_id: str | None  # None: every calendar of the account (/me/events)
    change_types: list[str]
    notification_url: str
    lifecycle_url: str | None
    expiration: float
    client_state: str | None
    application_id: str | None
    deleted: bool = False
    reauth_sent_for: float | None = None  # expiration value already warned about

    def expired(self, now: float) -> bool:
        return now >= self.expiration

    def live(self, now: float) -> bool:
        return not self.deleted and not self.expired(now)


class State:
    def __init__(self, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.clear()

    def clear(self) -> None:
        with self.lock:
            # A new generation per reset so tokens minted before it are refused afterwards.
            self.generation = secrets.token_hex(4)
            self.clock_offset = 0.0
            self.accounts: dict[str, Account] = {}
            self.calendars: dict[str, Calendar] = {}
            self.refresh_tokens: dict[str, Grant] = {}
            self.access_tokens: dict[str, Grant] = {}
            self.rotated_refresh_tokens: set[str] = set()  # Microsoft: used once, now invalid
            self.auth_codes: dict[str, AuthCode] = {}
            self.channels: list[Channel] = []
            self.subscriptions: dict[str, Subscription] = {}
            self.counters: defaultdict[str, int] = defaultdict(int)
            self.sinks: dict[str, list[dict[str, Any]]] = {
                "slack": [], "webhook": [], "pagerduty": [], "rejected": []}
            # Graph change notifications waiting for their batch window, by notification URL.
            self.graph_batches: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            self.tenant_id = util.guid()
            self._etag_n = 0
            # Message-number gaps are random but reproducible under the seed.
            self.rng = random.Random(f"{self.seed}:state")

    # --- clock ----------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset

    # --- lookups ----------------------------------------------------------------------------

    def account_by_email(self, provider: str, email: str) -> Account | None:
        for acct in self.accounts.values():
            if acct.provider == provider and acct.email.lower() == email.lower():
                return acct
        return None

    def primary_calendar(self, account: Account) -> Calendar:
        return self.calendars[account.calendar_ids[0]]

    def channels_for(self, calendar_id: str) -> list[Channel]:
        return [c for c in self.channels if c.calendar_id == calendar_id]

    def next_etag(self) -> str:
        self._etag_n += 1
        # Looks like Google's numeric etags and always differs after a modification.
        return f'"{int(self.now() * 1000) * 1000 + self._etag_n % 1000}"'

    # --- creation -------------------------------------------------------------------------

    def create_account(self, provider: str, email: str, names: list[str]) -> Account:
        acct = Account(id=f"acct-{secrets.token_hex(6)}", provider=provider, email=email,
                       user_id=util.guid(), tenant_id=self.tenant_id)
        self.accounts[acct.id] = acct
        for i, name in enumerate(names):
            if provider == "google":
                cal_id = email if i == 0 else f"c_{secrets.token_hex(16)}@group.calendar.google.com"
            else:
                cal_id = util.graph_id("AAMkAD")
            cal = Calendar(id=cal_id, account_id=acct.id, provider=provider, name=name,
                           primary=i == 0, time_zone="UTC",
                           resource_id=secrets.token_urlsafe(20).replace("-", "x"))
            self.calendars[cal_id] = cal
            acct.calendar_ids.append(cal_id)
        return acct

    def record_change(self, cal: Calendar, event: Event) -> None:
        """Stamp a modification: new change sequence, etag, change key and `updated`."""
        cal.seq += 1
        event.seq = cal.seq
        event.updated = self.now()
        event.etag = self.next_etag()
        event.change_key = secrets.token_urlsafe(12)

    def add_event(self, cal: Calendar, event_id: str, fields: dict[str, Any]) -> Event:
        now = self.now()
        ev = Event(id=event_id, calendar_id=cal.id, fields=fields, created=now, updated=now,
                   created_seq=cal.seq + 1, seq=0, etag="", change_key="")
        cal.events[event_id] = ev
        self.record_change(cal, ev)
        return ev

    def find_event(self, account: Account, event_id: str) -> tuple[Calendar, Event] | None:
        for cal_id in account.calendar_ids:
            cal = self.calendars[cal_id]
            if event_id in cal.events:
                return cal, cal.events[event_id]
        return None

    # --- tokens ---------------------------------------------------------------------------

    def revoke_account(self, account_id: str) -> None:
        for store in (self.refresh_tokens, self.access_tokens):
            for token in [t for t, g in store.items() if g.account_id == account_id]:
                del store[token]
        for code in [c for c, a in self.auth_codes.items() if a.account_id == account_id]:
            del self.auth_codes[code]
