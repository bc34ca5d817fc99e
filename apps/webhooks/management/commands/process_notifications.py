"""`process_notifications [--once]`: the notification worker (see services/worker.py).

SIGTERM / SIGINT stop it after the batch in hand. ``-v 2`` prints one line per calendar synced.
"""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand

from apps.webhooks.services.worker import BatchReport, NotificationWorker


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
        processed = worker.run(once=options["once"],
                               on_batch=self._print_batch if verbose else None)
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
