"""Fallback polling: sync the calendars that push does not (or cannot be trusted to) cover.

Whether push covers a calendar is a webhooks decision (subscriptions, kill switch, rollout);
``calendars`` must not import ``webhooks``, so the caller passes it in as ``is_covered`` (the
``poll_calendars`` command builds it with ``webhooks.services.subscriptions.polling_policy``).
Without it every calendar counts as uncovered, which is right for a deployment without push.

Every calendar carries its own jittered ``next_sync_at``; a pass only looks at the due ones and
claims each with a compare-and-set on that column, so two pollers (cron on two machines) never
sync the same calendar in the same round and thousands of calendars spread over the interval
instead of hitting the provider in the same second.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.calendars.models import Calendar, CalendarAccount
from apps.calendars.services.sync_engine import SyncResult, sync_calendar
from calendar_sync import sli

log = logging.getLogger(__name__)

Covered = Callable[[Calendar], bool]
# Due calendars read per database round trip during a pass.
POLL_CHUNK_SIZE = 200


@dataclass
class PollSummary:
    due: int = 0  # calendars whose next_sync_at had come
    polled: int = 0  # syncs run
    ok: int = 0
    failed: int = 0
    deferred: int = 0  # busy elsewhere or account backing off
    skipped_covered: int = 0  # healthy push covers them: pushed back one interval
    reasons: Counter = field(default_factory=Counter)  # uncovered / stale / silent
    silent_subscriptions: int = 0

    def as_text(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) or "none"
        return (f"due={self.due} polled={self.polled} ok={self.ok} failed={self.failed} "
                f"deferred={self.deferred} covered={self.skipped_covered} "
                f"silent_subscriptions={self.silent_subscriptions} reasons: {reasons}")


def next_poll_time(now: datetime | None = None) -> datetime:
    """now + POLL_INTERVAL_SECONDS, spread by +/- POLL_JITTER_FRACTION."""
    now = now or timezone.now()
    jitter = max(0.0, min(settings.POLL_JITTER_FRACTION, 0.9))
    seconds = settings.POLL_INTERVAL_SECONDS * random.uniform(1 - jitter, 1 + jitter)
    return now + timedelta(seconds=seconds)


def due_calendars(now: datetime | None = None) -> Iterable[Calendar]:
    """Sync-enabled calendars of usable accounts whose next poll has come."""
    now = now or timezone.now()
    interval = timedelta(seconds=settings.POLL_INTERVAL_SECONDS)
    return (
        Calendar.objects.select_related("calendar_account")
        .filter(sync_enabled=True, calendar_account__status=CalendarAccount.Status.ACTIVE)
        .filter(
            Q(next_sync_at__lte=now)
            # Never scheduled yet: due one interval after its last sync (or now if never).
            | Q(next_sync_at__isnull=True, last_synced_at__isnull=True)
            | Q(next_sync_at__isnull=True, last_synced_at__lte=now - interval)
        )
        .order_by("next_sync_at", "pk")
    )


def poll_reason(calendar: Calendar, *, covered: bool, silent: bool, now: datetime) -> str:
    """Why this calendar must be polled now ('' when healthy push covers it)."""
    if not covered:
        return "uncovered"
    staleness = timedelta(seconds=settings.POLL_STALENESS_SECONDS)
    if calendar.last_synced_at is None or calendar.last_synced_at < now - staleness:
        return "stale"  # pushes are not 100% reliable: the safety net
    if silent:
        return "silent"
    return ""


def poll_due_calendars(*, is_covered: Covered | None = None,
                       silent_calendar_ids: Iterable[int] = (),
                       limit: int | None = None) -> PollSummary:
    """One polling pass. ``silent_calendar_ids``: calendars whose push subscription has been
    quiet for too long (flagged by the caller) — synced even though push claims to cover them."""
    now = timezone.now()
    silent = set(silent_calendar_ids)
    summary = PollSummary(silent_subscriptions=len(silent))
    due = due_calendars(now)
    # Streamed in chunks: a pass may find thousands of calendars due.
    for calendar in (due[:limit] if limit else due).iterator(chunk_size=POLL_CHUNK_SIZE):
        summary.due += 1
        covered = bool(is_covered(calendar)) if is_covered else False
        reason = poll_reason(calendar, covered=covered, silent=calendar.pk in silent, now=now)
        if not _claim(calendar, now):
            continue  # another poller took it this round
        if not reason:
            summary.skipped_covered += 1
            continue
        summary.reasons[reason] += 1
        _poll_one(calendar, reason, summary)
    return summary


def _claim(calendar: Calendar, now: datetime) -> bool:
    """Compare-and-set next_sync_at forward; only the poller that moved it syncs."""
    claimed = Calendar.objects.filter(pk=calendar.pk, next_sync_at=calendar.next_sync_at) \
        if calendar.next_sync_at else \
        Calendar.objects.filter(pk=calendar.pk, next_sync_at__isnull=True)
    return bool(claimed.update(next_sync_at=next_poll_time(now)))


def _poll_one(calendar: Calendar, reason: str, summary: PollSummary) -> None:
    result: SyncResult = sync_calendar(calendar)
    summary.polled += 1
    if result.ok:
        summary.ok += 1
        # Changes found by polling count for freshness too: one seen minutes late is stale.
        sli.record(calendar.calendar_account.provider, changes=len(result.lags),
                   changes_fresh=sum(map(sli.is_fresh, result.lags)))
    elif result.deferred:
        summary.deferred += 1
    else:
        summary.failed += 1
        log.warning("poll (%s) of calendar %s: %s %s", reason, calendar.pk, result.outcome,
                    result.error)
    if result.retryable or result.outcome == "backoff":
        # Come back when the provider allows, not a whole interval later.
        wait = result.retry_after if result.retry_after is not None \
            else settings.SYNC_BACKOFF_BASE_SECONDS
        Calendar.objects.filter(pk=calendar.pk).update(
            next_sync_at=timezone.now() + timedelta(seconds=max(wait, 1.0))
        )
