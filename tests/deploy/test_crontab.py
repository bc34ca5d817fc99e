"""The project's crontab: every line parses, names a real command with flags it accepts, runs
on the schedule operators were promised, and behaves under /bin/sh exactly as we parse it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.core.management import get_commands, load_command_class

from calendar_sync.cron import parse_crontab, read_crontab
from tests.support.processes import ROOT, child_env

CRONTAB = ROOT / "crontab"


def _job_lines() -> list[str]:
    lines = [line.strip() for line in CRONTAB.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#") and "=" not in
            line.split()[0]]


def test_every_line_parses_and_every_job_line_is_a_job():
    tab = read_crontab(CRONTAB)
    assert len(tab.jobs) == len(_job_lines()) >= 5
    assert {"LOG_DIR", "LOCK_DIR", "APP_DIR"} <= set(tab.environment)


def test_every_command_exists_and_accepts_its_flags():
    commands = get_commands()
    for job in read_crontab(CRONTAB).jobs:
        assert job.command in commands, f"line {job.line_no}: no command {job.command!r}"
        parser = load_command_class(commands[job.command], job.command).create_parser(
            "manage.py", job.command)
        parser.parse_args(list(job.args))  # raises CommandError on an unknown flag


def test_every_job_is_wrapped_in_flock_and_logs_to_the_cron_log():
    jobs = read_crontab(CRONTAB).jobs
    for job in jobs:
        assert job.lock_path and job.lock_path.startswith("$LOCK_DIR/"), job.line_no
        assert job.log_path == "$LOG_DIR/cron.log", job.line_no
        assert "flock -n" in job.command_line
        assert job.command_line.endswith('>> "$LOG_DIR/cron.log" 2>&1')
    # One lock per job: a slow cleanup never blocks the health check.
    assert len({job.lock_path for job in jobs}) == len(jobs)


def test_the_schedule_over_a_week_is_the_promised_one():
    jobs = read_crontab(CRONTAB).jobs
    runs: Counter[str] = Counter()
    start = datetime(2026, 3, 2)  # a Monday
    for job in jobs:
        run = job.schedule.next_after(start - timedelta(minutes=1))
        while run < start + timedelta(days=7):
            runs[job.describe()] += 1
            run = job.schedule.next_after(run)

    assert runs["webhook_health_check --if-due --respond --send-alerts"] == 7 * 24 * 60
    assert runs["subscription_maintenance"] == 7 * 24 * 2
    assert runs["poll_calendars --once"] >= 7 * 24 * 12  # at least every 5 minutes
    assert runs["webhook_health_check --respond --send-alerts --json"] == 7  # the daily report
    assert runs["cleanup_webhook_data --days=30"] == 1  # weekly


def test_a_malformed_line_is_refused_with_its_line_number():
    from calendar_sync.cron import CronSyntaxError

    with pytest.raises(CronSyntaxError, match="line 2"):
        parse_crontab("SHELL=/bin/sh\n61 * * * * python manage.py check\n")


@pytest.mark.django_db(transaction=True)
def test_the_cleanup_line_run_by_sh_as_cron_would_takes_its_lock_and_writes_its_log(tmp_path):
    line = next(j for j in read_crontab(CRONTAB).jobs if j.command == "cleanup_webhook_data")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `python` on cron's PATH is this virtualenv's interpreter.
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = child_env(tmp_path, APP_DIR=str(ROOT), LOG_DIR=str(tmp_path / "log"),
                    LOCK_DIR=str(tmp_path), PATH=f"{bin_dir}:/usr/bin:/bin")
    (tmp_path / "log").mkdir()
    log = tmp_path / "log" / "cron.log"

    ran = subprocess.run(["/bin/sh", "-c", line.command_line], env=env, timeout=120)
    assert ran.returncode == 0, log.read_text()
    assert "rows in total" in log.read_text()

    # While another run holds the lock, the line exits at once without running anything.
    lock = os.path.expandvars(line.lock_path.replace("$LOCK_DIR", str(tmp_path)))
    before = log.read_text()
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        skipped = subprocess.run(["/bin/sh", "-c", line.command_line], env=env, timeout=30)
    assert skipped.returncode == 1
    assert log.read_text() == before
