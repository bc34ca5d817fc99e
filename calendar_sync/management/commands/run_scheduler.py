"""Run the ``crontab`` file's jobs on their schedule, for hosts and containers without cron."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from calendar_sync.cron import CronSyntaxError, read_crontab
from calendar_sync.scheduler import Scheduler


class Command(BaseCommand):
    help = "Run the crontab's jobs in-process (one source of truth with system cron)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--crontab", default=str(Path(settings.BASE_DIR) / "crontab"),
                            help="the crontab file (default: the project's)")
        parser.add_argument("--list", action="store_true",
                            help="print each job and its next run, then exit")
        parser.add_argument("--stop-grace", type=float, default=60.0,
                            help="seconds running jobs get to finish on SIGTERM (default 60)")

    def handle(self, *args, **options) -> None:
        try:
            crontab = read_crontab(options["crontab"])
        except (OSError, CronSyntaxError) as exc:
            raise CommandError(f"{options['crontab']}: {exc}")
        # The crontab's $LOG_DIR is the LOG_DIR setting; the process environment wins over
        # the file's defaults (so `make run` and containers place logs and locks themselves).
        variables = {**crontab.environment, "LOG_DIR": settings.LOG_DIR, **os.environ}
        scheduler = Scheduler(crontab, Path(settings.BASE_DIR) / "manage.py",
                              variables=variables, available_commands=get_commands())
        if options["list"]:
            now = timezone.localtime()
            for job in crontab.jobs:
                state = "" if job in scheduler.jobs else "  (command not installed)"
                nxt = job.schedule.next_after(now).strftime("%Y-%m-%d %H:%M")
                self.stdout.write(f"{job.schedule.text:<14} next {nxt}  {job.describe()}{state}")
            return
        # One line per start/skip/finish is the scheduler's output (-v 0: warnings only).
        logging.getLogger("calendar_sync.scheduler").setLevel(
            logging.INFO if options["verbosity"] >= 1 else logging.WARNING)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        scheduler.run(stop, clock=timezone.localtime, grace=options["stop_grace"])
        self.stdout.write("scheduler stopped")
