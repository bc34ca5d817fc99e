"""Run the health check: print the summary, run the automatic responses, alert.

Cron calls it every minute with ``--if-due --send-alerts``; the stored interval decides whether
the call does anything. Exit status: 0 healthy, 1 degraded, 2 critical.
"""

from __future__ import annotations

import json
import sys

from apps.monitoring.management.scheduled_command import ScheduledCommand
from apps.monitoring.services import schedule
from apps.monitoring.services.checks import format_summary, run_health_check


class Command(ScheduledCommand):
    help = "Check the webhook system's health, respond automatically and (optionally) alert."
    reporting_exit_codes = frozenset({1, 2})  # degraded, critical: the check itself ran

    def add_arguments(self, parser) -> None:
        parser.add_argument("--send-alerts", action="store_true",
                            help="Deliver incidents to the configured alert channels.")
        parser.add_argument("--json", action="store_true", help="Print the JSON document.")
        parser.add_argument("--if-due", action="store_true",
                            help="Return at once unless the stored check interval has elapsed.")

    def job_name(self, options: dict) -> str:
        # The every-minute check and the daily report are separate jobs with their own slots.
        return "health_check" if options["if_due"] else "health_report"

    def handle(self, *args, **options) -> None:
        if options["if_due"]:
            due, reason = schedule.is_due()
            if not due:
                if options["verbosity"] > 1:
                    self.stdout.write(f"Not due: {reason}")
                return
        run = run_health_check(send_alerts=options["send_alerts"])
        if options["json"]:
            self.stdout.write(json.dumps(run.as_dict(), indent=2, default=str))
        else:
            self.stdout.write(format_summary(run))
        if run.exit_code:
            sys.exit(run.exit_code)
