"""Pre-deployment: is alerting configured so that a critical problem reaches someone?

Prints each check; exits 1 when any check fails (warnings do not fail it).
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from apps.monitoring.services.validation import setup_checks


class Command(BaseCommand):
    help = "Check the alert channels and health thresholds before deploying."

    def handle(self, *args, **options) -> None:
        checks = setup_checks()
        for check in checks:
            self.stdout.write(str(check))
        failed = [c for c in checks if c.fails]
        if failed:
            self.stderr.write(f"{len(failed)} check(s) failed.")
            sys.exit(1)
        self.stdout.write("Monitoring setup OK.")
