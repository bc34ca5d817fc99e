"""`process_notifications [--once]`: the notification worker (see services/queue/worker.py).

It also watches the scheduler (``scheduler_stale``) and exits 1 when it cannot make progress
for WORKER_MAX_STALL_SECONDS, so that its supervisor restarts it.

SIGTERM / SIGINT stop it after the batch in hand. ``-v 2`` prints one line per calendar synced.
"""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.monitoring.services.watchdog import watch_scheduler
from apps.webhooks.services.queue.worker import BatchReport, NotificationWorker, WorkerStalled


class Command(BaseCommand):
    help = "Claim stored notifications and sync their calendars (one sync per calendar per batch)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true",
                            help="process what is due now, then exit")
        parser.add_argument("--batch-size", type=int, default=None)

    def handle(self, *args, **options):
        worker = NotificationWorker(batch_size=options["batch_size"])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: worker.stop())
        verbose = options["verbosity"] >= 2
        self.stdout.write(f"worker {worker.worker_id} started", ending="\n")
        self.stdout.flush()
        started = timezone.now()
        try:
            processed = worker.run(once=options["once"],
                                   on_batch=self._print_batch if verbose else None,
                                   watch=lambda: watch_scheduler(started))
        except WorkerStalled as exc:  # exit 1: the supervisor restarts the worker
            raise CommandError(f"worker {worker.worker_id} stopped: {exc}") from exc
        self.stdout.write(f"worker {worker.worker_id} stopped after {processed} notification(s)")

    def _print_batch(self, report: BatchReport) -> None:
        for o in report.outcomes:
            r = o.result
            counts = (f"kind={r.kind} created={r.created} updated={r.updated} "
                      f"deleted={r.deleted} unchanged={r.unchanged} skipped={r.skipped}"
                      if r else "kind=-")
            self.stdout.write(f"calendar={o.calendar_id} rows={o.rows} status={o.status} "
                              f"{counts}")
        self.stdout.flush()
