"""Pre-deployment: is alerting configured so that a critical problem reaches someone?

Prints each check; exits 1 when any check fails (warnings do not fail it). ``--send-test``
also sends a test message through each configured channel; one that fails fails the command.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from apps.monitoring.services.trial_alerts import send_test_alerts
from apps.monitoring.services.validation import setup_checks


class Command(BaseCommand):
    help = "Check the alert channels and health thresholds before deploying."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--send-test", action="store_true",
                            help="Also send a test message through each configured channel.")

    def handle(self, *args, **options) -> None:
        checks = setup_checks()
        for check in checks:
            self.stdout.write(str(check))
        failed = [c for c in checks if c.fails]
        if options["send_test"]:
            trials = send_test_alerts()
            for trial in trials:
                self.stdout.write(str(trial))
            failed += [t for t in trials if not t.ok]
        if failed:
            self.stderr.write(f"{len(failed)} check(s) failed.")
            sys.exit(1)
        self.stdout.write("Monitoring setup OK.")
