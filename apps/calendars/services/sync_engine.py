"""Bring one local calendar up to date with its provider.

The shape of a sync: take the per-calendar lock (one sync per calendar across every process),
fetch every page of changes from the provider with no database transaction open, then write the
changes and the new cursor in ONE transaction. A crash anywhere before that commit leaves the old
cursor in place, so the next sync fetches the same changes again; because upserts are keyed by
provider event id and skip unchanged etags, fetching them twice applies them once.

Provider errors are turned into a ``SyncResult`` the caller can act on: ``busy`` / ``backoff``
(try again shortly, nothing was attempted), ``retry`` (throttled or transient; the account is
backed off so its other calendars wait too, other accounts do not), ``failed`` (retrying the
same request will not help) and ``auth_revoked`` (stop until the user reconnects).
"""

from __future__ import annotations

import logging
import random
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import Error, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.calendars.models import Calendar, CalendarAccount, Event, SkippedEvent
from apps.calendars.providers.base import ChangePage, EventChange, ProviderClient
from apps.calendars.providers.clients import get_client
from apps.calendars.providers.errors import (
    AuthRevoked,
    BadEvent,
    CursorExpired,
    ProviderError,
    RateLimited,
    Transient,
)
from apps.calendars.services.accounts import mark_reauth_required
from calendar_sync import metrics, sli
from calendar_sync.db import drop_connection
from calendar_sync.locks import advisory_lock

log = logging.getLogger(__name__)

# First key of the two-key advisory lock: "CSNC". Other features pick other namespaces.
LOCK_NAMESPACE = 0x43534E43
_EVENT_FIELDS = ["etag", "status", "summary", "location", "start", "end", "all_day",
                 "recurring_event_id", "raw", "updated_at"]


class Outcome:
    OK = "ok"
    BUSY = "busy"  # another process is syncing this calendar: requeue shortly
    BACKOFF = "backoff"  # the account is backing off: nothing was called
    RETRY = "retry"  # throttled / transient: try again after ``retry_after``
    FAILED = "failed"  # retrying the same request will not help
    AUTH_REVOKED = "auth_revoked"  # the user must reconnect
    DISABLED = "disabled"  # sync switched off for the calendar or the account


@dataclass
class SyncResult:
    calendar_id: int
    outcome: str
    kind: str = "incremental"
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: int = 0
    error: str = ""
    # Seconds from the provider's last-modified time of each applied change to its local
    # commit (changes whose provider gives no such time are left out).
    lags: list[float] = field(default_factory=list)
    # Seconds until a retry makes sense: the provider's Retry-After, or the time left on the
    # account's backoff, or a short pause for ``busy``. None: use your own backoff.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK

    @property
    def deferred(self) -> bool:
        """Nothing was attempted: not a failure, just not now."""
        return self.outcome in (Outcome.BUSY, Outcome.BACKOFF)

    @property
    def retryable(self) -> bool:
        return self.outcome == Outcome.RETRY

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.deleted


def sync_calendar(calendar: Calendar, *, force_full: bool = False) -> SyncResult:
    """Sync ``calendar`` now, or report why not (see ``Outcome``). The calendar is re-read
    from the database; the object passed in is not refreshed."""
    return sync_calendar_id(calendar.pk, force_full=force_full)


def sync_calendar_id(calendar_id: int, *, force_full: bool = False) -> SyncResult:
    with calendar_lock(calendar_id) as acquired:
        if not acquired:
            return SyncResult(calendar_id, Outcome.BUSY,
                              retry_after=settings.SYNC_BUSY_RETRY_SECONDS)
        # Read under the lock: another process may have moved the cursor meanwhile.
        calendar = Calendar.objects.select_related("calendar_account").get(pk=calendar_id)
        return _sync_locked(calendar, force_full=force_full)


def _sync_locked(calendar: Calendar, *, force_full: bool) -> SyncResult:
    account = calendar.calendar_account
    if not calendar.sync_enabled or account.status == CalendarAccount.Status.DISABLED:
        return SyncResult(calendar.pk, Outcome.DISABLED, error="sync is switched off")
    if account.status == CalendarAccount.Status.REAUTH_REQUIRED:
        return SyncResult(calendar.pk, Outcome.AUTH_REVOKED,
                          error="the account needs to be reconnected")
    now = timezone.now()
    if account.backoff_until and account.backoff_until > now:
        wait = (account.backoff_until - now).total_seconds()
        return SyncResult(calendar.pk, Outcome.BACKOFF, retry_after=wait,
                          error="the account is backing off after throttling")
    kind = "full" if force_full or not calendar.sync_cursor else "incremental"
    try:
        client = get_client(account)
        page, kind = _fetch(client, calendar, force_full=force_full)
        changes, bad = _parse(client, page.items)
        result = _apply(calendar, page, changes, bad, kind)
    except ProviderError as exc:
        return _provider_failure(calendar, exc, kind)
    except Error:
        raise  # the database failed, not the sync: nothing can be recorded; the caller heals
    except Exception as exc:  # noqa: BLE001 - recorded, and the caller retries
        log.exception("sync of calendar %s crashed", calendar.pk)
        _record_failure(calendar, f"{type(exc).__name__}: {exc}")
        metrics.SYNCS.labels(account.provider, kind, "error").inc()
        return SyncResult(calendar.pk, Outcome.RETRY, kind=kind, error=str(exc)[:500])
    metrics.SYNCS.labels(account.provider, kind, "ok").inc()
    return result


# --- locking ------------------------------------------------------------------------------

def calendar_lock(calendar_id: int) -> AbstractContextManager[bool]:
    """Yields True if this process now holds the calendar's sync lock, False if another has it
    (a session advisory lock: held across provider calls, freed if the process dies)."""
    return advisory_lock(LOCK_NAMESPACE, calendar_id)


# --- fetch and parse (no transaction open) --------------------------------------------------

def _fetch(client: ProviderClient, calendar: Calendar, *,
           force_full: bool) -> tuple[ChangePage, str]:
    if force_full or not calendar.sync_cursor:
        page = client.full_sync(calendar)
    else:
        try:
            page = client.list_changes(calendar, calendar.sync_cursor)
        except CursorExpired:
            log.info("cursor of calendar %s expired: full resync", calendar.pk)
            page = client.full_sync(calendar)
    return page, "full" if page.full else "incremental"


def _parse(client: ProviderClient,
           items: list[dict[str, Any]]) -> tuple[dict[str, EventChange], dict[str, tuple]]:
    """The latest change per event id (pages may replay an event), and the unparseable ones."""
    changes: dict[str, EventChange] = {}
    bad: dict[str, tuple[str, dict]] = {}
    for item in items:
        try:
            change = client.parse_event(item)
        except BadEvent as exc:
            event_id = str(item.get("id", ""))[:1024] if isinstance(item, dict) else ""
            changes.pop(event_id, None)  # its latest state is unknown: apply no older one
            bad[event_id] = (str(exc)[:1000], item if isinstance(item, dict) else {})
            continue
        bad.pop(change.provider_event_id, None)
        changes.pop(change.provider_event_id, None)  # keep the order of the latest change
        changes[change.provider_event_id] = change
    return changes, bad


def is_deletion(change: EventChange) -> bool:
    """Google: ``cancelled`` is a deletion unless it is an instance of a recurring series
    (then it is a hidden instance and the series lives on)."""
    if change.deleted:
        return True
    return change.status == Event.Status.CANCELLED and not change.recurring_event_id


# --- write (one transaction) ------------------------------------------------------------------

def _apply(calendar: Calendar, page: ChangePage, changes: dict[str, EventChange],
           bad: dict[str, tuple], kind: str) -> SyncResult:
    result = SyncResult(calendar.pk, Outcome.OK, kind=kind, skipped=len(bad))
    deletions = {eid for eid, change in changes.items() if is_deletion(change)}
    upserts = [change for eid, change in changes.items() if eid not in deletions]
    with transaction.atomic():
        local = Event.objects.filter(calendar=calendar)
        if not page.full:
            local = local.filter(provider_event_id__in=list(changes))
        etags = dict(local.values_list("provider_event_id", "etag"))
        rows = []
        for change in upserts:
            known = change.provider_event_id in etags
            if known and change.etag and etags[change.provider_event_id] == change.etag:
                result.unchanged += 1
                continue
            result.updated += known
            result.created += not known
            rows.append(_event_row(calendar, change))
        if rows:
            Event.objects.bulk_create(
                rows, batch_size=500, update_conflicts=True,
                unique_fields=["calendar", "provider_event_id"], update_fields=_EVENT_FIELDS,
            )
        gone = set(deletions)
        if page.full:
            # A full listing is the whole truth: what it lacks was deleted at the provider.
            # Unparseable events still exist there, so they keep their last good copy.
            gone |= set(etags) - set(changes) - set(bad)
        result.deleted = _delete(calendar, gone)
        _record_skipped(calendar, bad, applied=[c.provider_event_id for c in upserts])
        Calendar.objects.filter(pk=calendar.pk).update(
            sync_cursor=page.next_cursor, last_synced_at=timezone.now(), last_sync_error="",
            sync_failure_count=0,
        )
    if not page.full:  # a full listing's old events are not changes anyone waited for
        committed = timezone.now()
        result.lags = [(committed - m).total_seconds()
                       for m in map(_last_modified, changes.values()) if m is not None]
        sli.record_lags(calendar.calendar_account.provider, result.lags, committed)
    return result


def _last_modified(change: EventChange) -> datetime | None:
    """When the provider says the event last changed (Google ``updated``, Graph
    ``lastModifiedDateTime``), if it says."""
    raw = change.raw if isinstance(change.raw, dict) else {}
    value = raw.get("updated") or raw.get("lastModifiedDateTime")
    if not isinstance(value, str) or len(value) > 64:
        return None
    moment = parse_datetime(value.replace("Z", "+00:00"))
    if moment is None or moment.tzinfo is None:
        return None
    return moment


def _event_row(calendar: Calendar, change: EventChange) -> Event:
    status = change.status if change.status in Event.Status.values else Event.Status.CONFIRMED
    return Event(
        calendar=calendar, provider_event_id=change.provider_event_id, etag=change.etag[:255],
        status=status, summary=change.summary, location=change.location, start=change.start,
        end=change.end, all_day=change.all_day,
        recurring_event_id=change.recurring_event_id[:1024], raw=change.raw,
    )


def _delete(calendar: Calendar, ids: set[str]) -> int:
    if not ids:
        return 0
    ids_list = list(ids)
    deleted, _ = Event.objects.filter(calendar=calendar, provider_event_id__in=ids_list).delete()
    # Deleting a series deletes its instances (exceptions and cancelled instances) with it.
    instances, _ = Event.objects.filter(
        calendar=calendar, recurring_event_id__in=ids_list
    ).delete()
    return deleted + instances


def _record_skipped(calendar: Calendar, bad: dict[str, tuple], applied: list[str]) -> None:
    """Keep one record per unparseable event (its latest error); drop it once it parses."""
    stale = list(bad) + applied
    if stale and SkippedEvent.objects.filter(calendar=calendar).exists():
        SkippedEvent.objects.filter(calendar=calendar, provider_event_id__in=stale).delete()
    if bad:
        SkippedEvent.objects.bulk_create([
            SkippedEvent(calendar=calendar, provider_event_id=eid, error=error, raw=raw)
            for eid, (error, raw) in bad.items()
        ])
        log.warning("calendar %s: skipped %d unparseable event(s)", calendar.pk, len(bad))


# --- failures ---------------------------------------------------------------------------------

def _provider_failure(calendar: Calendar, exc: ProviderError, kind: str) -> SyncResult:
    account = calendar.calendar_account
    metrics.SYNCS.labels(account.provider, kind, "error").inc()
    message = f"{exc.kind}: {exc}"[:1000]
    if isinstance(exc, AuthRevoked):
        # No call can succeed until the user reconnects: nobody keeps retrying.
        mark_reauth_required(account, message, only_if_active=True)
        _record_failure(calendar, message)
        return SyncResult(calendar.pk, Outcome.AUTH_REVOKED, kind=kind, error=message)
    if isinstance(exc, CursorExpired):
        # Page tokens expired in the middle of a full listing: simply start again later.
        _record_failure(calendar, message)
        return SyncResult(calendar.pk, Outcome.RETRY, kind=kind, error=message)
    if isinstance(exc, RateLimited | Transient):
        delay = backoff_delay(exc.retry_after, calendar.sync_failure_count,
                              base=settings.SYNC_BACKOFF_BASE_SECONDS,
                              cap=settings.SYNC_BACKOFF_MAX_SECONDS)
        _back_off_account(account, timezone.now() + timedelta(seconds=delay), message)
        _record_failure(calendar, message)
        log.info("calendar %s: %s; account %s backs off %.1fs", calendar.pk, exc.kind,
                 account.pk, delay)
        return SyncResult(calendar.pk, Outcome.RETRY, kind=kind, error=message,
                          retry_after=exc.retry_after)
    _record_failure(calendar, message)
    log.warning("calendar %s: sync failed: %s", calendar.pk, message)
    return SyncResult(calendar.pk, Outcome.FAILED, kind=kind, error=message)


def backoff_delay(retry_after: float | None, failures: int, *, base: float, cap: float) -> float:
    """The provider's Retry-After when it gave one, else truncated exponential backoff with
    +/-25% jitter (so that throttled accounts do not all come back in the same second)."""
    if retry_after is not None and retry_after >= 0:
        return float(retry_after)
    delay = min(cap, base * (2 ** min(failures, 20)))
    return delay * random.uniform(0.75, 1.25)


def _back_off_account(account: CalendarAccount, until: datetime, message: str) -> None:
    # Never shorten a backoff another process set.
    CalendarAccount.objects.filter(pk=account.pk).exclude(backoff_until__gt=until).update(
        backoff_until=until, last_error=message
    )


def _record_failure(calendar: Calendar, message: str) -> None:
    try:
        Calendar.objects.filter(pk=calendar.pk).update(
            last_sync_error=message[:2000], sync_failure_count=F("sync_failure_count") + 1
        )
    except Error:  # InterfaceError too
        drop_connection()
        log.warning("could not record the sync failure of calendar %s", calendar.pk)
