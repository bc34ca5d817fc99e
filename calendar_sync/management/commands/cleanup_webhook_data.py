"""Delete old notifications, API call records, snapshots, resolved incidents, silent worker
heartbeats and expired sessions in batches."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError

from apps.monitoring.management.scheduled_command import ScheduledCommand
from apps.monitoring.services.retention import purge_monitoring_data
from apps.webhooks.services.cleanup import purge_webhook_data


class Command(ScheduledCommand):
    help = ("Delete webhook/monitoring rows older than --days in primary-key batches "
            "(failed notifications and resolved incidents: CLEANUP_KEEP_FAILED_DAYS; "
            "pending work and open incidents: never).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, required=True, help="keep this many days")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--batch-size", type=int, default=None,
                            help="rows per batch (default CLEANUP_BATCH_SIZE)")

    def validate(self, options: dict) -> None:
        if options["days"] < 1:
            raise CommandError("--days must be at least 1")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")

    def handle(self, *args, days: int, dry_run: bool, batch_size: int | None, **options):
        keep_failed = max(days, settings.CLEANUP_KEEP_FAILED_DAYS)
        self.stdout.write(f"{'dry run: ' if dry_run else ''}removing rows older than {days} "
                          f"days (failed notifications, resolved incidents: {keep_failed} days)")
        kwargs = {"dry_run": dry_run, "batch_size": batch_size, "progress": self._progress}
        results = purge_webhook_data(days, **kwargs) + purge_monitoring_data(days, **kwargs)
        for r in results:
            verb = "would delete" if dry_run else "deleted"
            rate = "" if dry_run else f" in {r.batches} batches, {r.seconds:.1f}s " \
                                      f"({r.rows_per_second:,.0f} rows/s)"
            self.stdout.write(f"{r.label}: {verb} {r.deleted:,}{rate}")
        total = sum(r.deleted for r in results)
        self.stdout.write(self.style.SUCCESS(
            f"{'would delete' if dry_run else 'deleted'} {total:,} rows in total"))

    def _progress(self, label: str, batch: int, deleted: int, last_pk: int) -> None:
        self.stdout.write(f"  {label}: batch {batch}, {deleted:,} deleted (up to id {last_pk})")
