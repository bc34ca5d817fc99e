"""The notification worker: stored notifications in, up-to-date calendars out.

The shape of healthchecks' ``sendalerts``: a loop of ``handle_one() -> bool`` steps, each of
which claims work atomically so any number of workers on any number of machines can share one
PostgreSQL. One step:

1. claim a batch of due ``pending`` rows — of the calendars the coalescing rules
   (``coalescing.py``) let go now — with ``SELECT … FOR UPDATE SKIP LOCKED`` and mark them
   ``processing`` (claimed_at / claimed_by) in the same short transaction;
2. group them by calendar and run ONE incremental sync per calendar, however many
   notifications it received (a notification only says "something changed"), up to
   WORKER_CONCURRENCY calendars at a time;
3. mark each calendar's rows ``completed``, or back to ``pending`` with a backoff (``failed``
   after WORKER_MAX_ATTEMPTS), or deferred without an attempt when the calendar is already
   syncing elsewhere or its account is backing off.

Every state change after the claim is conditional on ``claimed_by`` still being this worker, so
a row reclaimed from a worker presumed dead is never finished twice. Rows left in
``processing`` longer than WORKER_VISIBILITY_TIMEOUT_SECONDS (a worker died) are reclaimed.
The worker sleeps on PostgreSQL ``LISTEN calendar_sync_notifications`` (the receivers NOTIFY
in the transaction that stores a row) with a WORKER_IDLE_POLL_SECONDS fallback, and on
SQLite simply polls.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Min, Q, QuerySet
from django.utils import timezone

from apps.calendars.services.sync_engine import (
    Outcome,
    SyncResult,
    backoff_delay,
    sync_calendar_id,
)
from apps.webhooks.models import WebhookNotification, WorkerHeartbeat
from apps.webhooks.services import coalescing
from apps.webhooks.services.wakeup import Wakeup
from calendar_sync import metrics

log = logging.getLogger(__name__)

# Written to a lifecycle row's error once the subscription manager has acted on it, so that a
# retried catch-up sync does not reauthorize / recreate the subscription a second time.
LIFECYCLE_HANDLED = "lifecycle handled; catch-up sync pending."
Status = WebhookNotification.Status


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"[:128]


@dataclass
class CalendarOutcome:
    calendar_id: int
    row_ids: list[int]
    status: str  # completed / retried / failed / deferred / ignored
    result: SyncResult | None = None
    error: str = ""

    @property
    def rows(self) -> int:
        return len(self.row_ids)


@dataclass
class BatchReport:
    claimed: int = 0
    outcomes: list[CalendarOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.rows for o in self.outcomes if o.status == status)


class NotificationWorker:
    def __init__(self, worker_id: str | None = None, *, batch_size: int | None = None) -> None:
        self.worker_id = worker_id or make_worker_id()
        self.batch_size = batch_size
        self.stopping = False
        self.processed = 0
        self.wakeup = Wakeup()
        self._last_reclaim = 0.0
        self._last_beat = 0.0
        self._follow_up_until = 0.0

    # --- one step ---------------------------------------------------------------------------
    def handle_one(self) -> BatchReport | None:
        """Claim and process one batch. None (falsy) when nothing was due."""
        rows = self.claim_batch()
        if not rows:
            return None
        return self.process(rows)

    def claim_batch(self) -> list[WebhookNotification]:
        now = timezone.now()
        limit = self.batch_size or settings.WORKER_BATCH_SIZE
        ready, _ = coalescing.plan(self._pending(now), now)
        if not ready:
            return []
        due = self._pending(now).filter(subscription__calendar_id__in=ready)
        due = due.order_by("received_at", "id")
        # SQLite has no row locks (and one worker): the same code without them. `of=self`
        # locks only the notification rows, not the joined subscription rows.
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        with transaction.atomic():
            ids = list(due.values_list("id", flat=True)[:limit])
            if ids:
                WebhookNotification.objects.filter(id__in=ids).update(
                    processing_status=Status.PROCESSING, claimed_at=now,
                    claimed_by=self.worker_id,
                )
        if not ids:
            return []
        return list(
            WebhookNotification.objects.filter(id__in=ids, claimed_by=self.worker_id)
            .select_related("subscription")
            .order_by("received_at", "id")
        )

    @staticmethod
    def _pending(now) -> QuerySet:
        return WebhookNotification.objects.filter(processing_status=Status.PENDING).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))

    def seconds_until_due(self, limit: float) -> float | None:
        """How soon a pending row becomes claimable (None: nothing within ``limit``). Lets
        the loop sleep exactly until a held-back burst or a retried row is due."""
        now = timezone.now()
        _, held = coalescing.plan(self._pending(now), now)
        retry = WebhookNotification.objects.filter(
            processing_status=Status.PENDING, next_attempt_at__gt=now,
            next_attempt_at__lte=now + _seconds(limit),
        ).aggregate(at=Min("next_attempt_at"))["at"]
        waits = [held] if held is not None and held <= limit else []
        waits += [(retry - now).total_seconds()] if retry else []
        return max(0.0, min(waits)) if waits else None

    def process(self, rows: list[WebhookNotification]) -> BatchReport:
        report = BatchReport(claimed=len(rows))
        groups: dict[int, list[WebhookNotification]] = defaultdict(list)
        for row in rows:
            groups[row.subscription.calendar_id].append(row)
        jobs = deque(groups.items())
        threads = min(self._concurrency(), len(jobs))
        if threads <= 1:
            for calendar_id, group in jobs:
                report.outcomes.extend(self._process_calendar(calendar_id, group))
        else:
            self._process_concurrently(jobs, threads, report)
        self.processed += len(rows)
        return report

    @staticmethod
    def _concurrency() -> int:
        # Provider calls are network-bound, so a few calendars are synced at once. Not on
        # SQLite (one writer at a time), and not inside a caller's open transaction (other
        # threads' connections could not see its rows).
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            return 1
        return settings.WORKER_CONCURRENCY

    def _process_concurrently(self, jobs: deque, threads: int, report: BatchReport) -> None:
        lock = threading.Lock()

        def drain() -> None:
            try:
                while True:
                    with lock:
                        if not jobs:
                            return
                        calendar_id, group = jobs.popleft()
                    outcomes = self._process_calendar(calendar_id, group)
                    with lock:
                        report.outcomes.extend(outcomes)
            finally:
                connection.close()  # this thread's own connection

        with ThreadPoolExecutor(threads, thread_name_prefix="sync") as pool:
            for future in [pool.submit(drain) for _ in range(threads)]:
                future.result()  # a database error reaches the loop, which reconnects

    # --- one calendar -------------------------------------------------------------------------
    def _process_calendar(self, calendar_id: int,
                          rows: list[WebhookNotification]) -> list[CalendarOutcome]:
        started = time.monotonic()
        outcomes = []
        to_sync = [r for r in rows if r.kind != WebhookNotification.Kind.LIFECYCLE]
        for row in rows:
            if row.kind == WebhookNotification.Kind.LIFECYCLE:
                needs_sync, outcome = self._lifecycle(calendar_id, row, started)
                if needs_sync:
                    to_sync.append(row)
                elif outcome:
                    outcomes.append(outcome)
        if to_sync:
            outcomes.append(self._sync(calendar_id, to_sync, started))
        metrics.PROCESSING_SECONDS.labels(rows[0].provider).observe(time.monotonic() - started)
        return outcomes

    def _lifecycle(self, calendar_id: int, row: WebhookNotification,
                   started: float) -> tuple[bool, CalendarOutcome | None]:
        """Reauthorize / recreate through the subscription manager; True: catch-up sync."""
        from apps.webhooks.services.subscriptions import handle_lifecycle

        if row.error.startswith(LIFECYCLE_HANDLED):
            return True, None
        try:
            needs_sync = bool(handle_lifecycle(row.subscription, row.resource_state))
        except Exception as exc:  # noqa: BLE001 - recorded on the row, retried with backoff
            log.warning("lifecycle %s of subscription %s failed: %s", row.resource_state,
                        row.subscription_id, exc)
            status = self._retry([row], f"lifecycle: {exc}", None)
            return False, CalendarOutcome(calendar_id, [row.pk], status, error=str(exc))
        if not needs_sync:
            self._finish([row], Status.COMPLETED, started)
            return False, CalendarOutcome(calendar_id, [row.pk], "completed")
        row.error = LIFECYCLE_HANDLED
        self._held([row]).update(error=LIFECYCLE_HANDLED)
        return True, None

    def _sync(self, calendar_id: int, rows: list[WebhookNotification],
              started: float) -> CalendarOutcome:
        try:
            result = sync_calendar_id(calendar_id)
        except Exception as exc:  # noqa: BLE001 - the rows carry the error and retry
            log.exception("sync of calendar %s raised", calendar_id)
            status = self._retry(rows, f"{type(exc).__name__}: {exc}", None)
            return CalendarOutcome(calendar_id, _ids(rows), status, error=str(exc))
        if result.ok:
            self._finish(rows, Status.COMPLETED, started)
            status = "completed"
        elif result.deferred:
            self._defer(rows, result.retry_after or settings.SYNC_BUSY_RETRY_SECONDS)
            status = "deferred"
        elif result.outcome == Outcome.RETRY:
            status = self._retry(rows, result.error, result.retry_after)
        elif result.outcome == Outcome.DISABLED:
            self._finish(rows, Status.IGNORED, started, error=result.error)
            status = "ignored"
        else:  # failed / auth_revoked: retrying will not help
            self._finish(rows, Status.FAILED, started, error=result.error)
            status = "failed"
        return CalendarOutcome(calendar_id, _ids(rows), status, result=result, error=result.error)

    # --- row state changes (only rows this worker still holds) ---------------------------------
    def _held(self, rows: list[WebhookNotification]):
        return WebhookNotification.objects.filter(
            pk__in=[r.pk for r in rows], processing_status=Status.PROCESSING,
            claimed_by=self.worker_id,
        )

    def _finish(self, rows: list[WebhookNotification], status: str, started: float, *,
                error: str = "") -> None:
        self._held(rows).update(
            processing_status=status, processed_at=timezone.now(), next_attempt_at=None,
            processing_time_ms=int((time.monotonic() - started) * 1000), error=error[:2000],
        )

    def _defer(self, rows: list[WebhookNotification], seconds: float) -> None:
        """Not an attempt: the calendar is syncing elsewhere, or its account backs off."""
        self._held(rows).update(
            processing_status=Status.PENDING, claimed_by="", claimed_at=None,
            next_attempt_at=timezone.now() + _seconds(seconds),
        )

    def _retry(self, rows: list[WebhookNotification], error: str,
               retry_after: float | None) -> str:
        """attempts + 1; back to pending after a backoff (or Retry-After), or failed."""
        now = timezone.now()
        final = "retried"
        by_attempts: dict[tuple[int, bool], list[WebhookNotification]] = defaultdict(list)
        for row in rows:
            handled = row.error.startswith(LIFECYCLE_HANDLED)
            by_attempts[(row.attempts + 1, handled)].append(row)
        for (attempts, handled), same in by_attempts.items():
            text = f"{LIFECYCLE_HANDLED} {error}" if handled else error
            if attempts >= settings.WORKER_MAX_ATTEMPTS:
                self._held(same).update(
                    processing_status=Status.FAILED, attempts=attempts, processed_at=now,
                    next_attempt_at=None, error=text[:2000],
                )
                final = "failed"
                continue
            delay = retry_after if retry_after is not None else backoff_delay(
                None, attempts - 1, base=settings.WORKER_RETRY_BASE_SECONDS,
                cap=settings.WORKER_RETRY_MAX_SECONDS)
            self._held(same).update(
                processing_status=Status.PENDING, attempts=attempts, claimed_by="",
                claimed_at=None, next_attempt_at=now + _seconds(delay), error=text[:2000],
            )
        return final

    def reclaim_stuck(self) -> int:
        """Rows a dead worker left in ``processing`` go back to pending (an attempt is counted,
        so a row that kills every worker that touches it ends as failed)."""
        cutoff = timezone.now() - _seconds(settings.WORKER_VISIBILITY_TIMEOUT_SECONDS)
        stuck = WebhookNotification.objects.filter(
            processing_status=Status.PROCESSING, claimed_at__lt=cutoff)
        failed = stuck.filter(attempts__gte=settings.WORKER_MAX_ATTEMPTS - 1).update(
            processing_status=Status.FAILED, attempts=F("attempts") + 1,
            processed_at=timezone.now(), error="abandoned by a worker (visibility timeout)",
        )
        back = stuck.update(
            processing_status=Status.PENDING, attempts=F("attempts") + 1, claimed_by="",
            claimed_at=None, next_attempt_at=None,
            error="reclaimed after the visibility timeout",
        )
        if failed or back:
            log.warning("reclaimed %d stuck notification(s), %d failed for good", back, failed)
        return back + failed

    # --- the loop -----------------------------------------------------------------------------
    def beat(self, *, stopped: bool = False) -> None:
        now = timezone.now()
        host, pid, _ = self.worker_id.split(":", 2)
        WorkerHeartbeat.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={"hostname": host, "pid": int(pid) if pid.isdigit() else 0,
                      "last_seen_at": now, "processed_count": self.processed,
                      "stopped_at": now if stopped else None},
            create_defaults={"hostname": host, "pid": int(pid) if pid.isdigit() else 0,
                             "started_at": now, "last_seen_at": now,
                             "processed_count": self.processed,
                             "stopped_at": now if stopped else None},
        )

    def stop(self) -> None:
        """Ask the loop to exit after the batch in hand (signal-handler safe)."""
        self.stopping = True
        self.wakeup.wake()

    def run(self, *, once: bool = False, on_batch=None) -> int:
        """Loop until stopped (``once``: until nothing is due, held-back bursts included).
        Returns the number of rows processed."""
        try:
            if not once:
                self.wakeup.listen()
            while not self.stopping:
                try:
                    self._maybe_reclaim()
                    self._maybe_beat()
                    report = self.handle_one()
                    wait = None if report else self.seconds_until_due(
                        max(settings.WORKER_COALESCE_SECONDS,
                            settings.WORKER_BURST_MAX_WAIT_SECONDS) if once
                        else settings.WORKER_IDLE_POLL_SECONDS)
                except DatabaseError as exc:
                    if once:
                        raise
                    log.error("database error in the worker loop: %s", exc)
                    connection.close()
                    report, wait = None, settings.WORKER_IDLE_POLL_SECONDS
                if report and on_batch:
                    on_batch(report)
                if report:
                    continue
                if once and wait is None:
                    break
                self._sleep(settings.WORKER_IDLE_POLL_SECONDS if wait is None else wait)
        finally:
            try:
                self.beat(stopped=True)
            except DatabaseError:
                log.warning("could not record the worker's stop")
            self.wakeup.close()
        return self.processed

    def _sleep(self, seconds: float) -> None:
        # Senders may coalesce their NOTIFYs (the receivers send at most one per 50 ms per
        # process), so a row stored just after a wake-up can come without one: look again a
        # few times shortly after each wake-up instead of sleeping the whole idle interval.
        follow_up = settings.WORKER_NOTIFY_FOLLOW_UP_SECONDS
        if time.monotonic() < self._follow_up_until:
            seconds = min(seconds, follow_up / 3)
        if self.wakeup.wait(seconds):
            self._follow_up_until = time.monotonic() + follow_up

    def _maybe_beat(self) -> None:
        # Every loop, but at most once a second: a burst of NOTIFYs must not become a burst
        # of heartbeat writes.
        if time.monotonic() - self._last_beat >= 1.0:
            self._last_beat = time.monotonic()
            self.beat()

    def _maybe_reclaim(self) -> None:
        every = max(1.0, settings.WORKER_VISIBILITY_TIMEOUT_SECONDS / 4)
        if not self._last_reclaim or time.monotonic() - self._last_reclaim >= every:
            self._last_reclaim = time.monotonic()
            self.reclaim_stuck()


def _ids(rows: list[WebhookNotification]) -> list[int]:
    return [row.pk for row in rows]


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=float(value))
