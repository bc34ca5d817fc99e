"""Post-deployment: migrations, database, cache, health endpoint, https, workers, alerting.

``--wait S`` retries failing checks for up to S seconds (processes may still be starting).
Prints each check; exits 1 when any check fails.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from apps.monitoring.services.validation import deployment_checks


class Command(BaseCommand):
    help = "Check a fresh deployment: exit non-zero if anything is not ready."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--wait", type=float, default=0.0, metavar="S",
                            help="Retry failing checks for up to S seconds.")

    def handle(self, *args, **options) -> None:
        checks = deployment_checks(wait_seconds=max(0.0, options["wait"]))
        for check in checks:
            self.stdout.write(str(check))
        failed = [c for c in checks if c.fails]
        if failed:
            self.stderr.write(f"Deployment NOT ready: {len(failed)} check(s) failed.")
            sys.exit(1)
        self.stdout.write("Deployment OK.")
