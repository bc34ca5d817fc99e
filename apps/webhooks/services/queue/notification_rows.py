"""The state changes of stored notifications, for the worker (``worker.py``).

Claiming is a compare-and-set under ``SELECT … FOR UPDATE SKIP LOCKED``: any number of
workers on any number of machines share one PostgreSQL and none claims a row twice. Every state
change after the claim is conditional on ``claimed_by`` still being the claiming worker, so a
row reclaimed from a worker presumed dead is never finished twice.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from apps.calendars.services.sync_engine import backoff_delay
from apps.webhooks.models import WebhookNotification
from calendar_sync import sli

log = logging.getLogger(__name__)

Status = WebhookNotification.Status


def claim(worker_id: str, calendar_ids: list[int], limit: int,
          now: datetime) -> list[WebhookNotification]:
    """Mark up to ``limit`` due rows of these calendars ``processing`` for this worker (one
    short transaction) and return them, oldest first."""
    rows = (WebhookNotification.objects.due(now)
            .filter(subscription__calendar_id__in=calendar_ids).order_by("received_at", "id"))
    # SQLite has no row locks (and one worker): the same code without them. `of=self`
    # locks only the notification rows, not the joined subscription rows.
    if connection.features.has_select_for_update_skip_locked:
        rows = rows.select_for_update(skip_locked=True, of=("self",))
    with transaction.atomic():
        ids = list(rows.values_list("id", flat=True)[:limit])
        if ids:
            WebhookNotification.objects.filter(id__in=ids).update(
                processing_status=Status.PROCESSING, claimed_at=now, claimed_by=worker_id)
    if not ids:
        return []
    return list(
        WebhookNotification.objects.filter(id__in=ids, claimed_by=worker_id)
        .select_related("subscription")
        .order_by("received_at", "id")
    )


def held(worker_id: str, rows: list[WebhookNotification]) -> QuerySet:
    """The rows this worker still holds (not reclaimed by another meanwhile)."""
    return WebhookNotification.objects.filter(
        pk__in=[r.pk for r in rows], processing_status=Status.PROCESSING, claimed_by=worker_id)


def finish(worker_id: str, rows: list[WebhookNotification], status: str, started: float, *,
           error: str = "") -> None:
    """Completed / ignored / failed for good; ``started`` is a ``time.monotonic()`` value."""
    now, ms = timezone.now(), int((time.monotonic() - started) * 1000)
    if held(worker_id, rows).update(
        processing_status=status, processed_at=now, next_attempt_at=None,
        processing_time_ms=ms, error=error[:2000],
    ):
        record_finished(rows, status, now, ms)


def record_finished(rows: list[WebhookNotification], status: str, now: datetime,
                    ms: int | None = None) -> None:
    """Count finished rows in the SLI rollups: a change notification is fresh when its sync
    ended within the freshness limit of its receipt; a failed one never became visible."""
    if not rows:
        return
    changes = [r for r in rows if r.kind == WebhookNotification.Kind.CHANGE
               and status != Status.IGNORED]
    fresh = sum(status == Status.COMPLETED
                and sli.is_fresh((now - r.received_at).total_seconds()) for r in changes)
    failed = status == Status.FAILED
    timed = ms is not None and status == Status.COMPLETED
    sli.record(rows[0].provider, now, changes=len(changes), changes_fresh=fresh,
               notifications_ok=0 if failed else len(rows),
               notifications_failed=len(rows) if failed else 0,
               # The average processing time is that of completed work.
               processing_ms_sum=(ms or 0) * len(rows) if timed else 0,
               processing_count=len(rows) if timed else 0)
    if ms is not None:
        sli.record_calendar(rows[0].subscription.calendar_id, rows[0].provider, len(rows), ms,
                            now)


def defer(worker_id: str, rows: list[WebhookNotification], seconds: float) -> None:
    """Not an attempt: the calendar is syncing elsewhere, or its account backs off."""
    held(worker_id, rows).update(
        processing_status=Status.PENDING, claimed_by="", claimed_at=None,
        next_attempt_at=timezone.now() + timedelta(seconds=seconds),
    )


def retry(worker_id: str, rows: list[WebhookNotification], error: str,
          retry_after: float | None) -> str:
    """attempts + 1; back to pending after a backoff (or Retry-After), or failed. Returns
    'failed' when any row ran out of attempts, else 'retried'."""
    now = timezone.now()
    final = "retried"
    by_attempts: dict[int, list[WebhookNotification]] = defaultdict(list)
    for row in rows:
        by_attempts[row.attempts + 1].append(row)
    for attempts, same in by_attempts.items():
        if attempts >= settings.WORKER_MAX_ATTEMPTS:
            if held(worker_id, same).update(
                processing_status=Status.FAILED, attempts=attempts, processed_at=now,
                next_attempt_at=None, error=error[:2000],
            ):
                record_finished(same, Status.FAILED, now)
            final = "failed"
            continue
        delay = retry_after if retry_after is not None else backoff_delay(
            None, attempts - 1, base=settings.WORKER_RETRY_BASE_SECONDS,
            cap=settings.WORKER_RETRY_MAX_SECONDS)
        held(worker_id, same).update(
            processing_status=Status.PENDING, attempts=attempts, claimed_by="",
            claimed_at=None, next_attempt_at=now + timedelta(seconds=delay), error=error[:2000],
        )
    return final


def mark_lifecycle_handled(worker_id: str, row: WebhookNotification) -> None:
    """The subscription manager has acted on this lifecycle row; only its catch-up sync is
    left (kept through retries and reclaims, unlike ``error``)."""
    row.lifecycle_handled_at = timezone.now()
    held(worker_id, [row]).update(lifecycle_handled_at=row.lifecycle_handled_at)


def reclaim_stuck() -> int:
    """Rows a dead worker left in ``processing`` go back to pending (an attempt is counted, so
    a row that kills every worker that touches it ends as failed)."""
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_VISIBILITY_TIMEOUT_SECONDS)
    stuck = WebhookNotification.objects.filter(
        processing_status=Status.PROCESSING, claimed_at__lt=cutoff)
    back, failed = _give_back(stuck, "visibility timeout")
    if failed or back:
        log.warning("reclaimed %d stuck notification(s), %d failed for good", back, failed)
    return back + failed


def hand_back(worker_id: str) -> int:
    """The live worker's own claimed rows back to pending after a database error interrupted
    it (an attempt is counted), at once instead of after the visibility timeout."""
    mine = WebhookNotification.objects.filter(processing_status=Status.PROCESSING,
                                              claimed_by=worker_id)
    return sum(_give_back(mine, "handed back after a database error"))


def _give_back(rows: QuerySet, why: str) -> tuple[int, int]:
    """(back to pending, failed for good): attempts + 1 on each."""
    failed = rows.filter(attempts__gte=settings.WORKER_MAX_ATTEMPTS - 1).update(
        processing_status=Status.FAILED, attempts=F("attempts") + 1,
        processed_at=timezone.now(), error=f"abandoned by a worker ({why})",
    )
    back = rows.update(
        processing_status=Status.PENDING, attempts=F("attempts") + 1, claimed_by="",
        claimed_at=None, next_attempt_at=None, error=f"reclaimed: {why}",
    )
    return back, failed
