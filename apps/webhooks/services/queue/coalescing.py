"""When a calendar's pending notifications may be claimed: one sync for many notifications.

A notification only says "something changed", so syncing once per burst is as correct as
syncing once per notification, and far cheaper. The rules, per calendar:

- a calendar not synced for a while (WORKER_BURST_MAX_WAIT_SECONDS) is synced on its first
  notification: the common case, a user editing a quiet calendar, sees its change at once;
- never twice within WORKER_COALESCE_SECONDS (cooldown), whatever arrives meanwhile;
- after the cooldown, if several notifications wait and the newest is younger than
  WORKER_BURST_QUIET_SECONDS, a burst is still arriving: wait for it to go quiet, but never
  longer than WORKER_BURST_MAX_WAIT_SECONDS after the oldest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, QuerySet


@dataclass(frozen=True)
class CalendarQueue:
    calendar_id: int
    pending: int
    newest: datetime
    oldest: datetime
    last_synced_at: datetime | None


def ready_at(queue: CalendarQueue, now: datetime) -> datetime:
    """The earliest moment this calendar's rows may be claimed (``now`` when they may)."""
    cooldown = timedelta(seconds=settings.WORKER_COALESCE_SECONDS)
    quiet = timedelta(seconds=settings.WORKER_BURST_QUIET_SECONDS)
    max_wait = timedelta(seconds=settings.WORKER_BURST_MAX_WAIT_SECONDS)
    synced = queue.last_synced_at
    if synced is None or synced <= now - max_wait:
        return now
    if queue.pending == 1:
        return max(now, synced + cooldown)
    return max(now, synced + cooldown, min(queue.newest + quiet, queue.oldest + max_wait))


def calendar_queues(pending: QuerySet) -> list[CalendarQueue]:
    """One row per calendar with claimable notifications (a single GROUP BY, no locks)."""
    rows = (
        pending.order_by()
        .values("subscription__calendar_id")
        .annotate(n=Count("id"), newest=Max("received_at"), oldest=Min("received_at"),
                  synced=Max("subscription__calendar__last_synced_at"))
    )
    return [CalendarQueue(r["subscription__calendar_id"], r["n"], r["newest"], r["oldest"],
                          r["synced"]) for r in rows]


def plan(pending: QuerySet, now: datetime) -> tuple[list[int], float | None]:
    """(calendars whose rows may be claimed now, seconds until the next one may; None when
    nothing else is waiting)."""
    ready, later = [], []
    for queue in calendar_queues(pending):
        at = ready_at(queue, now)
        if at <= now:
            ready.append(queue.calendar_id)
        else:
            later.append((at - now).total_seconds())
    return ready, (min(later) if later else None)
