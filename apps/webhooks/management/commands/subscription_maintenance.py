"""`subscription_maintenance [--dry-run]`: renew, repair, create and stop push channels.

The crontab runs it every 30 minutes. It prints one line per action kind and exits non-zero
only when it could not run at all (database unreachable, ...): a calendar whose provider
failed is counted as "failed" and retried with backoff by a later run.
"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import Error

from apps.monitoring.management.scheduled_command import ScheduledCommand
from apps.webhooks.services.subscriptions.maintenance import run_maintenance


class Command(ScheduledCommand):
    help = "Renew due push channels, repair failed ones, create missing ones, stop unwanted ones."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="show what would be done; call no provider, change nothing")

    def handle(self, *args, **options):
        try:
            summary = run_maintenance(dry_run=options["dry_run"])
        except Error as exc:
            raise CommandError(f"subscription maintenance could not run: {exc}") from exc
        for line in summary.lines():
            self.stdout.write(line)
