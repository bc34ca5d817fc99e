"""Run the health check: print the summary; with flags, respond automatically and alert.

Cron calls it every minute with ``--if-due --respond --send-alerts``; the stored interval
decides whether the call does anything. A plain run only observes and reports.
"""

from __future__ import annotations

import json
import logging
import sys

from apps.monitoring.management.scheduled_command import ScheduledCommand
from apps.monitoring.services.health_cycle import format_summary, is_due, run_health_cycle

log = logging.getLogger(__name__)

EPILOG = ("exit status: 0 healthy, 1 degraded, 2 critical, 3 the check itself could not run "
          "(settings, or an error inside the check), 4 every alert delivery of the run failed; "
          "--if-due when not due: 0")


class Command(ScheduledCommand):
    help = ("Check the webhook system's health and report it; --respond runs the automatic "
            "responses, --send-alerts delivers incidents.")
    reporting_exit_codes = frozenset({1, 2})  # degraded, critical: the check itself ran

    def create_parser(self, prog_name, subcommand, **kwargs):
        return super().create_parser(prog_name, subcommand, epilog=EPILOG, **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--respond", action="store_true",
                            help="Run the automatic responses (fallback polling, suspending "
                                 "failing subscriptions, maintenance); cron passes it.")
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
            due, reason = is_due()
            if not due:
                self.stdout.write(f"Not due: {reason}")
                return
        try:
            run = run_health_cycle(send_alerts=options["send_alerts"], act=options["respond"],
                                   scheduled=options["if_due"])
        except Exception as exc:
            if options["traceback"] or options["verbosity"] >= 3:
                raise
            # The class only: a message can carry a channel's URL or a host's credentials;
            # --traceback shows the whole of it to the operator at the terminal.
            log.error("health check could not run: %s", type(exc).__name__)
            self.stderr.write(f"webhook_health_check: the check could not run: "
                              f"{type(exc).__name__} (run with --traceback for the detail)")
            sys.exit(3)
        if options["json"]:
            self.stdout.write(json.dumps(run.as_dict(), indent=2, default=str))
        else:
            self.stdout.write(format_summary(run))
        if run.exit_code:
            sys.exit(run.exit_code)
