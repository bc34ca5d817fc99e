"""`send_test_alert [--channel NAME]`: a test message through each configured alert channel.

Exits 1 when any channel failed (or none is configured), so it can gate a deployment.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from apps.monitoring.alert_channels import CHANNEL_CLASSES
from apps.monitoring.services.trial_alerts import send_test_alerts


class Command(BaseCommand):
    help = "Send a test message through each configured alert channel (or --channel NAME)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--channel", metavar="NAME",
                            help=f"Only this channel ({', '.join(CHANNEL_CLASSES)}).")

    def handle(self, *args, **options) -> None:
        only = (options["channel"] or "").strip().lower() or None
        if only and only not in CHANNEL_CLASSES:
            raise CommandError(f"unknown channel {only!r} (known: {', '.join(CHANNEL_CLASSES)})")
        results = send_test_alerts(only)
        if not results:
            self.stderr.write("No alert channel configured (WEBHOOK_ALERT_CHANNELS is empty).")
            sys.exit(1)
        for result in results:
            self.stdout.write(str(result))
        if not all(r.ok for r in results):
            sys.exit(1)
