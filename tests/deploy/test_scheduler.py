"""run_scheduler: cron expressions, crontab lines as cron reads them, jobs run on schedule as
real subprocesses, never overlapping, output to their log, a clean stop on SIGTERM."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from calendar_sync.cron import CronSchedule, CronSyntaxError, parse_command, parse_crontab
from calendar_sync.scheduler import Scheduler
from tests.support.processes import ROOT, child_env

MANAGE = ROOT / "manage.py"


@pytest.mark.parametrize("expr, when, expected", [
    ("* * * * *", datetime(2026, 1, 1, 0, 0), True),
    ("*/30 * * * *", datetime(2026, 1, 1, 5, 30), True),
    ("*/30 * * * *", datetime(2026, 1, 1, 5, 31), False),
    ("7,37 * * * *", datetime(2026, 1, 1, 5, 37), True),
    ("0 8 * * *", datetime(2026, 1, 1, 8, 0), True),
    ("0 8 * * *", datetime(2026, 1, 1, 9, 0), False),
    ("30 3 * * 0", datetime(2026, 3, 1, 3, 30), True),  # a Sunday
    ("30 3 * * 7", datetime(2026, 3, 1, 3, 30), True),  # 7 is Sunday too
    ("30 3 * * sun", datetime(2026, 3, 2, 3, 30), False),  # a Monday
    ("0 9-17/4 * * mon-fri", datetime(2026, 3, 2, 13, 0), True),
    ("0 9-17/4 * * mon-fri", datetime(2026, 3, 2, 11, 0), False),
    ("0 0 1 jan,jul *", datetime(2026, 7, 1, 0, 0), True),
    ("5/15 * * * *", datetime(2026, 1, 1, 0, 50), True),
    ("@hourly", datetime(2026, 1, 1, 13, 0), True),
    ("@weekly", datetime(2026, 3, 1, 0, 0), True),
])
def test_cron_expressions_match_the_minutes_cron_would_run(expr, when, expected):
    assert CronSchedule.parse(expr).matches(when) is expected


def test_with_both_day_fields_restricted_either_one_matching_is_enough():
    schedule = CronSchedule.parse("0 0 13 * fri")
    assert schedule.matches(datetime(2026, 3, 13, 0, 0))  # Friday the 13th
    assert schedule.matches(datetime(2026, 3, 6, 0, 0))  # a Friday
    assert schedule.matches(datetime(2026, 5, 13, 0, 0))  # a Wednesday, the 13th
    assert not schedule.matches(datetime(2026, 3, 7, 0, 0))


def test_the_next_run_is_the_first_matching_minute_after_now():
    assert CronSchedule.parse("30 3 * * 0").next_after(datetime(2026, 3, 1, 3, 30)) == \
        datetime(2026, 3, 8, 3, 30)
    assert CronSchedule.parse("7,37 * * * *").next_after(datetime(2026, 3, 1, 23, 50)) == \
        datetime(2026, 3, 2, 0, 7)


@pytest.mark.parametrize("expr, field", [
    ("60 * * * *", "minute"), ("* 24 * * *", "hour"), ("* * 0 * *", "day of month"),
    ("* * * 13 *", "month"), ("* * * * 8", "day of week"), ("*/0 * * * *", "minute"),
    ("5-1 * * * *", "minute"), ("* * * foo *", "month"),
])
def test_an_impossible_field_is_refused_naming_the_field(expr, field):
    with pytest.raises(CronSyntaxError, match=field):
        CronSchedule.parse(expr)


def test_flock_cd_and_redirections_are_understood():
    command, args, lock, log = parse_command(
        'cd "$APP_DIR" && flock -n "$LOCK_DIR/x.lock" /usr/local/bin/python manage.py '
        'poll_calendars --once >> "$LOG_DIR/cron.log" 2>&1')
    assert (command, args, lock, log) == ("poll_calendars", ("--once",), "$LOCK_DIR/x.lock",
                                          "$LOG_DIR/cron.log")
    assert parse_command("python manage.py shell -c 'import time; time.sleep(1)'")[:2] == \
        ("shell", ("-c", "import time; time.sleep(1)"))
    # An argument 2 before a redirection stays an argument; `2>>` is stderr's redirection.
    assert parse_command("python manage.py x --n 2 >> out 2>> err") == \
        ("x", ("--n", "2"), None, "out")


@pytest.mark.parametrize("line, reason", [
    ("python manage.py check | tee x", "shell construct"),
    ("python manage.py check; rm -rf /", "shell construct"),
    ("python manage.py check & python manage.py check", "shell construct"),
    ("python manage.py check $(id)", "shell construct"),
    ("flock /tmp/x python manage.py check", "non-blocking"),
    ("python manage.py check &> log", "not sh syntax"),
    ("date +%s", "special"),
    ("/usr/bin/backup --all", "python manage.py COMMAND"),
    ("rm -f x && python manage.py check", "cd DIR"),
])
def test_a_command_the_scheduler_could_not_run_like_cron_is_refused(line, reason):
    with pytest.raises(CronSyntaxError, match=reason):
        parse_command(line)


def _scheduler(tmp: Path, crontab: str, **kwargs) -> Scheduler:
    tab = parse_crontab(crontab)
    variables = {"LOG_DIR": str(tmp / "log"), "LOCK_DIR": str(tmp / "locks")}
    return Scheduler(tab, MANAGE, variables=variables, env=child_env(tmp), **kwargs)


def _wait_idle(scheduler: Scheduler, timeout: float = 60) -> list:
    finished, deadline = [], time.monotonic() + timeout
    while scheduler.running and time.monotonic() < deadline:
        finished += scheduler.reap()
        time.sleep(0.05)
    return finished


SLEEPER = "python manage.py shell -c 'import time; time.sleep({s}); print(\"slept\")'"


def test_a_tick_starts_only_the_due_jobs_and_their_output_goes_to_the_log(tmp_path):
    scheduler = _scheduler(tmp_path, (
        "* * * * * flock -n $LOCK_DIR/a.lock python manage.py check >> $LOG_DIR/cron.log 2>&1\n"
        "0 3 * * * flock -n $LOCK_DIR/b.lock python manage.py check --deploy "
        ">> $LOG_DIR/other.log 2>&1\n"))

    outcomes = scheduler.tick(datetime(2026, 3, 2, 10, 15, 30))
    finished = _wait_idle(scheduler)

    assert [(job.describe(), what) for job, what in outcomes] == [("check", "started")]
    assert [(job.command, code) for job, code in finished] == [("check", 0)]
    assert "System check identified no issues" in (tmp_path / "log" / "cron.log").read_text()
    assert not (tmp_path / "log" / "other.log").exists()


def test_a_job_still_running_is_skipped_not_started_twice(tmp_path):
    scheduler = _scheduler(tmp_path, "* * * * * flock -n $LOCK_DIR/s.lock "
                           + SLEEPER.format(s=2) + " >> $LOG_DIR/cron.log 2>&1\n")
    first = scheduler.tick(datetime(2026, 3, 2, 10, 0))
    second = scheduler.tick(datetime(2026, 3, 2, 10, 1))
    _wait_idle(scheduler)
    assert [what for _, what in first + second] == ["started", "running"]
    assert (tmp_path / "log" / "cron.log").read_text().count("slept") == 1


def test_a_lock_held_elsewhere_like_system_cron_skips_the_job(tmp_path):
    scheduler = _scheduler(tmp_path, "* * * * * flock -n $LOCK_DIR/c.lock "
                           "python manage.py check >> $LOG_DIR/cron.log 2>&1\n")
    (tmp_path / "locks").mkdir()
    with open(tmp_path / "locks" / "c.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert [what for _, what in scheduler.tick(datetime(2026, 3, 2, 10, 0))] == ["locked"]
    assert [what for _, what in scheduler.tick(datetime(2026, 3, 2, 10, 1))] == ["started"]
    _wait_idle(scheduler)


def test_a_command_this_installation_lacks_is_reported_and_not_scheduled(tmp_path):
    scheduler = _scheduler(tmp_path, "* * * * * python manage.py no_such_command\n"
                                     "* * * * * python manage.py check\n",
                           available_commands={"check"})
    assert [j.command for j in scheduler.missing] == ["no_such_command"]
    assert [j.command for j in scheduler.due(datetime(2026, 3, 2, 10, 0))] == ["check"]


def test_after_a_stall_missed_minutes_are_caught_up_once_each(tmp_path):
    scheduler = _scheduler(tmp_path, (
        "2 10 * * * flock -n $LOCK_DIR/d.lock python manage.py check "
        ">> $LOG_DIR/daily.log 2>&1\n"
        "* * * * * flock -n $LOCK_DIR/m.lock python manage.py check "
        ">> $LOG_DIR/minute.log 2>&1\n"))
    times = iter([datetime(2026, 3, 2, 10, 0, 30), datetime(2026, 3, 2, 10, 4, 10)])
    now = next(times)
    calls = 0
    stop = threading.Event()

    def clock() -> datetime:
        # The clock jumps only once the 10:00 runs are done (a stall, not an overlap).
        nonlocal now, calls
        calls += 1
        if calls > 1 and not scheduler.running:
            try:
                now = next(times)
            except StopIteration:
                stop.set()
        return now

    scheduler.run(stop, clock=clock, grace=60)

    # 10:02 fell inside the stall: the daily job still ran, once.
    assert (tmp_path / "log" / "daily.log").read_text().count("no issues") == 1
    # The every-minute job ran at 10:00 and once for the 10:01-10:04 catch-up, not 4 times.
    assert (tmp_path / "log" / "minute.log").read_text().count("no issues") == 2


@pytest.mark.slow
def test_run_scheduler_stops_on_sigterm_after_its_running_job_finishes(tmp_path):
    crontab = tmp_path / "crontab"
    crontab.write_text("* * * * * flock -n $LOCK_DIR/t.lock " + SLEEPER.format(s=3)
                       + " >> $LOG_DIR/cron.log 2>&1\n")
    env = child_env(tmp_path, LOG_DIR=str(tmp_path / "log"), LOCK_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, str(MANAGE), "run_scheduler", "--crontab",
                             str(crontab), "--stop-grace", "30"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    # The job due in the starting minute is started at once.
    while not any("started " in line for line in output) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    rest = "".join(output)

    assert proc.returncode == 0, rest
    assert "slept" in (tmp_path / "log" / "cron.log").read_text()
    assert "finished shell" in rest and "scheduler stopped" in rest


def test_run_scheduler_lists_the_projects_jobs_with_their_next_run(tmp_path):
    listing = subprocess.run([sys.executable, str(MANAGE), "run_scheduler", "--list"], cwd=ROOT,
                             env=child_env(tmp_path), capture_output=True, text=True,
                             timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "cleanup_webhook_data --days=30" in listing.stdout
    assert "not installed" not in listing.stdout
