"""`poll_calendars [--once]`: fallback polling of calendars healthy push does not cover.

Lives in the webhooks app because it combines the webhooks coverage policy with the calendars
polling service (calendars itself must not import webhooks).
"""

from __future__ import annotations

import signal
import time

from django.conf import settings
from django.db import Error, connection

from apps.calendars.services.polling import poll_due_calendars
from apps.monitoring.management.scheduled_command import ScheduledCommand
from apps.webhooks.services.subscriptions.polling_policy import push_coverage, silent_subscriptions


class Command(ScheduledCommand):
    help = "Sync calendars not covered by healthy push, stale ones, and those of silent channels."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run one pass and exit")

    def handle(self, *args, **options):
        self._stop = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request_stop)
        while True:
            try:
                self._poll_once()
            except Error as exc:  # InterfaceError too (a connection closed under it)
                if options["once"]:
                    raise
                # The long-running poller outlives a database restart: next pass, reconnected.
                self.stderr.write(f"poll: pass failed ({type(exc).__name__}: {exc})")
                connection.close()
            if options["once"]:
                return
            deadline = time.monotonic() + settings.POLL_PASS_SECONDS
            while not self._stop and time.monotonic() < deadline:
                time.sleep(0.5)
            if self._stop:
                return

    def _poll_once(self) -> None:
        silent = silent_subscriptions()
        summary = poll_due_calendars(
            is_covered=push_coverage(),
            silent_calendar_ids={sub.calendar_id for sub in silent},
        )
        self.stdout.write(f"poll: {summary.as_text()}")

    def _request_stop(self, signum, frame):
        self._stop = True
