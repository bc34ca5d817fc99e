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

The row state changes are in ``notification_rows.py``. Rows left in ``processing`` longer than
WORKER_VISIBILITY_TIMEOUT_SECONDS (a worker died) are reclaimed; a live worker whose database
connection broke hands its own rows back as soon as the database answers again.
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import Error, connection
from django.db.models import Min
from django.utils import timezone

from apps.calendars.services.sync_engine import Outcome, SyncResult, sync_calendar_id
from apps.webhooks.models import WebhookNotification, WorkerHeartbeat
from apps.webhooks.services.queue import coalescing
from apps.webhooks.services.queue import notification_rows as claims
from apps.webhooks.services.queue.wakeup import Wakeup
from apps.webhooks.services.subscriptions import renewal
from calendar_sync import metrics
from calendar_sync.db import drop_connection

log = logging.getLogger(__name__)

Status = WebhookNotification.Status


class WorkerStalled(RuntimeError):
    """No step succeeded for WORKER_MAX_STALL_SECONDS: exit so the supervisor restarts us."""


def make_worker_id() -> str:
    host = settings.CLUSTER_HOST_NAME or socket.gethostname()
    return f"{host}:{os.getpid()}:{random.getrandbits(32):08x}"[:128]


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
        self._last_progress = time.monotonic()
        self._owe_hand_back = False  # rows claimed before a database error are still ours
        self._last_watch = 0.0

    # --- one step ---------------------------------------------------------------------------
    def handle_one(self) -> BatchReport | None:
        """Claim and process one batch. None (falsy) when nothing was due."""
        rows = self.claim_batch()
        if not rows:
            return None
        return self.process(rows)

    def claim_batch(self) -> list[WebhookNotification]:
        now = timezone.now()
        ready, _ = coalescing.plan(WebhookNotification.objects.due(now), now)
        if not ready:
            return []
        limit = self.batch_size or settings.WORKER_BATCH_SIZE
        return claims.claim(self.worker_id, ready, limit, now)

    def seconds_until_due(self, limit: float) -> float | None:
        """How soon a pending row becomes claimable (None: nothing within ``limit``). Lets
        the loop sleep exactly until a held-back burst or a retried row is due."""
        now = timezone.now()
        _, held = coalescing.plan(WebhookNotification.objects.due(now), now)
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
        if row.lifecycle_handled_at is not None:
            return True, None
        try:
            needs_sync = bool(renewal.handle_lifecycle(row.subscription, row.resource_state))
        except Exception as exc:  # noqa: BLE001 - recorded on the row, retried with backoff
            log.warning("lifecycle %s of subscription %s failed: %s", row.resource_state,
                        row.subscription_id, exc)
            status = claims.retry(self.worker_id, [row], f"lifecycle: {exc}", None)
            return False, CalendarOutcome(calendar_id, [row.pk], status, error=str(exc))
        if not needs_sync:
            claims.finish(self.worker_id, [row], Status.COMPLETED, started)
            return False, CalendarOutcome(calendar_id, [row.pk], "completed")
        claims.mark_lifecycle_handled(self.worker_id, row)
        return True, None

    def _sync(self, calendar_id: int, rows: list[WebhookNotification],
              started: float) -> CalendarOutcome:
        try:
            result = sync_calendar_id(calendar_id)
        except Error:
            raise  # the loop reconnects and hands these rows back
        except Exception as exc:  # noqa: BLE001 - the rows carry the error and retry
            log.exception("sync of calendar %s raised", calendar_id)
            status = claims.retry(self.worker_id, rows, f"{type(exc).__name__}: {exc}", None)
            return CalendarOutcome(calendar_id, _ids(rows), status, error=str(exc))
        if result.ok:
            claims.finish(self.worker_id, rows, Status.COMPLETED, started)
            status = "completed"
        elif result.deferred:
            claims.defer(self.worker_id, rows,
                         result.retry_after or settings.SYNC_BUSY_RETRY_SECONDS)
            status = "deferred"
        elif result.outcome == Outcome.RETRY:
            status = claims.retry(self.worker_id, rows, result.error, result.retry_after)
        elif result.outcome == Outcome.DISABLED:
            claims.finish(self.worker_id, rows, Status.IGNORED, started, error=result.error)
            status = "ignored"
        else:  # failed / auth_revoked: retrying will not help
            claims.finish(self.worker_id, rows, Status.FAILED, started, error=result.error)
            status = "failed"
        return CalendarOutcome(calendar_id, _ids(rows), status, result=result, error=result.error)

    def reclaim_stuck(self) -> int:
        return claims.reclaim_stuck()

    # --- the loop -----------------------------------------------------------------------------
    def beat(self, *, stopped: bool = False) -> None:
        now = timezone.now()
        host, _, rest = self.worker_id.partition(":")  # "host:pid:nonce" from make_worker_id
        pid = rest.partition(":")[0]
        fields = {"hostname": host, "pid": int(pid) if pid.isdigit() else 0,
                  "last_seen_at": now, "processed_count": self.processed,
                  "stopped_at": now if stopped else None}
        WorkerHeartbeat.objects.update_or_create(
            worker_id=self.worker_id, defaults=fields,
            create_defaults={**fields, "started_at": now},
        )

    def stop(self) -> None:
        """Ask the loop to exit after the batch in hand (signal-handler safe)."""
        self.stopping = True
        self.wakeup.wake()

    def run(self, *, once: bool = False,
            on_batch: Callable[[BatchReport], None] | None = None,
            watch: Callable[[], None] | None = None) -> int:
        """Loop until stopped (``once``: until nothing is due, held-back bursts included).
        ``watch`` is called every WORKER_WATCH_SECONDS (the scheduler watchdog). Returns the
        number of rows processed; raises ``WorkerStalled`` when no step succeeds for
        WORKER_MAX_STALL_SECONDS."""
        try:
            if not once:
                self.wakeup.listen()
            while not self.stopping:
                report, wait = self._step(once)
                self._check_progress()
                if watch is not None and not once:
                    self._maybe_watch(watch)
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
            except Error:
                log.warning("could not record the worker's stop")
            self.wakeup.close()
        return self.processed

    def _step(self, once: bool) -> tuple[BatchReport | None, float | None]:
        """One turn of the loop: (the batch processed, or None and how long to sleep)."""
        try:
            if self._owe_hand_back:
                self._hand_back()
            self._maybe_reclaim()
            self._maybe_beat()
            report = self.handle_one()
            horizon = (max(settings.WORKER_COALESCE_SECONDS,
                           settings.WORKER_BURST_MAX_WAIT_SECONDS) if once
                       else settings.WORKER_IDLE_POLL_SECONDS)
            wait = None if report else self.seconds_until_due(horizon)
        except Exception as exc:
            if once:
                raise
            # A long-running worker outlives a database restart or one unexpected error.
            # Any database error (InterfaceError included: "connection already closed" is not
            # a DatabaseError) drops the connection; the next step reconnects and first hands
            # back the rows this worker had claimed.
            if isinstance(exc, Error):
                log.error("database error in the worker loop (%s): reconnecting",
                          type(exc).__name__)
                self._owe_hand_back = True
                drop_connection()
            else:
                log.exception("unexpected error in the worker loop")
            return None, settings.WORKER_IDLE_POLL_SECONDS
        self._last_progress = time.monotonic()
        return report, wait

    def _hand_back(self) -> None:
        count = claims.hand_back(self.worker_id)
        self._owe_hand_back = False
        if count:
            log.warning("handed back %d notification(s) claimed before a database error", count)

    def _check_progress(self) -> None:
        stalled = time.monotonic() - self._last_progress
        if stalled > settings.WORKER_MAX_STALL_SECONDS:
            raise WorkerStalled(f"no progress for {stalled:.0f} s")

    def _maybe_watch(self, watch: Callable[[], None]) -> None:
        if time.monotonic() - self._last_watch < settings.WORKER_WATCH_SECONDS:
            return
        self._last_watch = time.monotonic()
        try:
            watch()
        except Exception as exc:  # noqa: BLE001 - watching must never stop the processing
            log.warning("watchdog failed (%s)", type(exc).__name__)
            if isinstance(exc, Error):
                drop_connection()

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
            if settings.WORKER_ALIVE_FILE:  # for the container health check
                Path(settings.WORKER_ALIVE_FILE).touch()

    def _maybe_reclaim(self) -> None:
        every = max(1.0, settings.WORKER_VISIBILITY_TIMEOUT_SECONDS / 4)
        if not self._last_reclaim or time.monotonic() - self._last_reclaim >= every:
            self._last_reclaim = time.monotonic()
            self.reclaim_stuck()


def _ids(rows: list[WebhookNotification]) -> list[int]:
    return [row.pk for row in rows]


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=float(value))
