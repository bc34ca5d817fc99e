"""Scheduled jobs that are safe to schedule on every host.

Every host may run ``run_scheduler`` (or system cron with the same crontab). A job run:

1. takes the job's PostgreSQL session advisory lock (keyed by the job's name), or skips when
   another host holds it: a run still going anywhere is never overlapped. The server releases
   the lock when its holder dies, even by ``kill -9``, so the next slot runs elsewhere;
2. claims its slot, the scheduled minute, by inserting the ``JobRun`` row — ``(job, slot)`` is
   unique, so a slot a faster host already ran is skipped even after that run finished;
3. marks runs of the same job left ``running`` as interrupted (we hold the lock, so their
   process is gone), runs, and records outcome, end time and a one-line summary.

When the database cannot be reached at all the job runs unrecorded: the health check must
still run to alert the outage itself (its offline incident store prevents duplicates).
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import Error, IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.monitoring.models import JobRun
from apps.webhooks.services.cleanup import cutoffs
from calendar_sync.db import drop_connection
from calendar_sync.locks import advisory_lock

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x43534A42
# The scheduler passes the minute it runs a job for (a caught-up minute is not "now"); system
# cron does not, and its jobs start within seconds of their minute.
SLOT_ENV = "CALENDAR_SYNC_JOB_SLOT"

Outcome = JobRun.Outcome


@dataclass
class JobClaim:
    """What ``claimed`` yields: ``run`` is None when the job must not run (``reason`` says
    why); ``unrecorded`` when it runs without a lock or row (the database is unreachable)."""

    name: str
    run: JobRun | None
    reason: str = ""
    unrecorded: bool = False

    @property
    def runs(self) -> bool:
        return self.run is not None or self.unrecorded


def current_slot(now: datetime | None = None) -> datetime:
    given = parse_datetime(os.environ.get(SLOT_ENV, ""))
    slot = given or now or timezone.now()
    if timezone.is_naive(slot):  # the schedule's times are UTC
        slot = timezone.make_aware(slot, UTC)
    return slot.replace(second=0, microsecond=0)


def _key(name: str) -> int:
    return zlib.crc32(name.encode())  # the same in every process (the built-in hashing is salted)


@contextmanager
def claimed(name: str, slot: datetime | None = None) -> Iterator[JobClaim]:
    """Hold the job's cluster lock and its slot's row for the body; record how it ended."""
    lock = ExitStack()
    try:
        acquired = lock.enter_context(advisory_lock(LOCK_NAMESPACE, _key(name)))
        claim = _claim(name, slot or current_slot()) if acquired else JobClaim(
            name, None, "a run of it is going on another host")
    except Error as exc:
        log.error("job %s runs unrecorded: the database is unreachable (%s)", name,
                  type(exc).__name__)
        lock.close()
        drop_connection()
        claim = JobClaim(name, None, "database unreachable", unrecorded=True)
    with lock:
        yield claim


def _claim(name: str, slot: datetime) -> JobClaim:
    JobRun.objects.unfinished().filter(job=name).update(
        outcome=Outcome.INTERRUPTED, finished_at=timezone.now(),
        summary="the process running it died")
    try:
        with transaction.atomic():  # a savepoint when called inside a transaction
            run = JobRun.objects.create(job=name, slot=slot, host=settings.CLUSTER_HOST_NAME,
                                        pid=os.getpid())
    except IntegrityError:
        return JobClaim(name, None, f"the {slot:%H:%M} run already happened")
    return JobClaim(name, run)


def finish(claim: JobClaim, ok: bool, summary: str) -> None:
    if claim.run is None:
        return
    try:
        JobRun.objects.filter(pk=claim.run.pk).update(
            finished_at=timezone.now(), summary=summary.strip()[:255],
            outcome=Outcome.SUCCEEDED if ok else Outcome.FAILED)
    except Error:
        log.warning("could not record the end of job %s", claim.name)
        drop_connection()


def last_runs(now: datetime | None = None) -> list[dict]:
    """Every job's latest run and its age, for the health document and the dashboard."""
    now = now or timezone.now()
    latest = (JobRun.objects.order_by("job", "-started_at").distinct("job")
              if connection.vendor == "postgresql" else _latest_per_job())
    return [{
        "job": run.job, "host": run.host, "outcome": run.outcome, "summary": run.summary,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "age_seconds": max(0, int((now - run.started_at).total_seconds())),
    } for run in latest]


def _latest_per_job() -> list[JobRun]:
    seen: dict[str, JobRun] = {}
    for run in JobRun.objects.order_by("-started_at")[:1000]:
        seen.setdefault(run.job, run)
    return sorted(seen.values(), key=lambda r: r.job)


def expired_job_runs(days: int, now: datetime | None = None) -> QuerySet:
    cutoff, _ = cutoffs(days, now)
    return JobRun.objects.finished().filter(started_at__lt=cutoff)
