"""The engine of ``run_scheduler``: the crontab's jobs, on their schedule, never overlapping.

Each job runs as ``python manage.py COMMAND ARGS`` in a subprocess (a crash or a leak in one
job cannot take the scheduler down, and every run starts with fresh database connections).
Like the ``flock -n`` in the crontab line, a job whose previous run is still going is skipped,
and the lock file named in the line is really taken (``fcntl.flock``), so a system cron on the
same host and this scheduler never run the same job at once. Across hosts, each job takes a
cluster-wide lock and claims its minute itself (``apps/monitoring/services/jobs.py``), so a
scheduler may run on every host. Output goes where the line's ``>>`` sends it; the scheduler
itself logs one line per start, skip and finish.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from calendar_sync.cron import CronJob, Crontab, expand

log = logging.getLogger("calendar_sync.scheduler")

# After a stall (machine suspended, clock stepped forward) catch up at most this many minutes,
# each job at most once: a daily job is not lost to a short pause, and nothing runs in a storm.
MAX_CATCH_UP_MINUTES = 10


@dataclass
class RunningJob:
    job: CronJob
    process: subprocess.Popen
    started: float
    lock_fd: int | None
    log_file: IO[bytes] | None


def _minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


class Scheduler:
    def __init__(
        self,
        crontab: Crontab,
        manage_py: Path,
        *,
        variables: Mapping[str, str] | None = None,
        available_commands: Iterable[str] | None = None,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.manage_py = manage_py
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.variables = dict(variables if variables is not None else crontab.environment)
        known = None if available_commands is None else set(available_commands)
        self.jobs = [j for j in crontab.jobs if known is None or j.command in known]
        self.missing = [j for j in crontab.jobs if known is not None and j.command not in known]
        self.running: dict[int, RunningJob] = {}

    # --- one minute -------------------------------------------------------------------------
    def due(self, minute: datetime) -> list[CronJob]:
        return [job for job in self.jobs if job.schedule.matches(minute)]

    def tick(self, now: datetime) -> list[tuple[CronJob, str]]:
        """Start the jobs due in ``now``'s minute; ``(job, "started"|"running"|"locked")``."""
        self.reap()
        return [(job, self.start(job, _minute(now))) for job in self.due(_minute(now))]

    def start(self, job: CronJob, minute: datetime | None = None) -> str:
        if job.line_no in self.running:
            since = time.monotonic() - self.running[job.line_no].started
            log.warning("skipped %s: the previous run is still going (%.0fs)", job.describe(),
                        since)
            return "running"
        lock_fd = self._lock(job)
        if lock_fd is False:
            log.warning("skipped %s: its lock is held by another process", job.describe())
            return "locked"
        log_file = self._open_log(job)
        try:
            process = subprocess.Popen(
                [self.python, str(self.manage_py), job.command, *job.args],
                cwd=self.manage_py.parent, env=self._job_env(minute),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                pass_fds=(lock_fd,) if lock_fd is not None else (),
                start_new_session=True,  # a Ctrl-C to the scheduler does not hit jobs directly
            )
        except OSError:
            self._release(lock_fd, log_file)
            log.exception("could not start %s", job.describe())
            return "failed"
        self.running[job.line_no] = RunningJob(job, process, time.monotonic(), lock_fd, log_file)
        log.info("started %s (line %d, pid %d)", job.describe(), job.line_no, process.pid)
        return "started"

    def reap(self) -> list[tuple[CronJob, int]]:
        finished = []
        for line_no, run in list(self.running.items()):
            code = run.process.poll()
            if code is None:
                continue
            del self.running[line_no]
            self._release(run.lock_fd, run.log_file)
            took = time.monotonic() - run.started
            log.info("finished %s: exit %d after %.1fs", run.job.describe(), code, took)
            finished.append((run.job, code))
        return finished

    # --- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event, clock: Callable[[], datetime], grace: float) -> None:
        """Run until ``stop`` is set, then give running jobs ``grace`` seconds to finish."""
        for job in self.missing:
            log.warning("line %d names `%s`, which this installation does not have: not "
                        "scheduled", job.line_no, job.command)
        log.info("scheduler started with %d jobs", len(self.jobs))
        last: datetime | None = None
        while not stop.is_set():
            now = clock()
            minute = _minute(now)
            if last is None or minute > last:
                first = minute
                if last is not None:
                    first = max(last + timedelta(minutes=1),
                                minute - timedelta(minutes=MAX_CATCH_UP_MINUTES))
                self._run_minutes(first, minute)
            last = minute  # a clock stepped back does not rerun minutes already done
            self.reap()
            to_next = 60 - now.second - now.microsecond / 1e6
            stop.wait(max(0.05, min(1.0, to_next)))
        self.shutdown(grace)

    def _run_minutes(self, first: datetime, last: datetime) -> None:
        self.reap()
        seen: set[int] = set()
        minute = first
        while minute <= last:
            for job in self.due(minute):
                if job.line_no not in seen:
                    seen.add(job.line_no)
                    self.start(job, minute)
            minute += timedelta(minutes=1)

    def shutdown(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        if self.running:
            log.info("stopping: waiting up to %.0fs for %d running job(s)", grace,
                     len(self.running))
        while self.running and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if not self.running:
                break
            for run in self.running.values():
                log.warning("sending %s to %s (pid %d)", sig.name, run.job.describe(),
                            run.process.pid)
                run.process.send_signal(sig)
            end = time.monotonic() + wait
            while self.running and time.monotonic() < end:
                self.reap()
                time.sleep(0.1)

    def _job_env(self, minute: datetime | None) -> dict[str, str]:
        # The slot a job runs for: with schedulers on several hosts, the one that claims the
        # slot first runs it (apps/monitoring/services/jobs.py), even if started late.
        if minute is None:
            return self.env
        return {**self.env, "CALENDAR_SYNC_JOB_SLOT": minute.isoformat()}

    # --- lock and log files -----------------------------------------------------------------
    def _lock(self, job: CronJob) -> int | None | bool:
        """The open, locked file descriptor; None without a lock file; False if held."""
        if not job.lock_path:
            return None
        path = Path(expand(job.lock_path, self.variables))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        return fd

    def _open_log(self, job: CronJob) -> IO[bytes] | None:
        if not job.log_path:
            return None
        path = Path(expand(job.log_path, self.variables))
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab")  # noqa: SIM115 - closed when the job is reaped

    @staticmethod
    def _release(lock_fd: int | None, log_file: IO[bytes] | None) -> None:
        if lock_fd is not None:
            os.close(lock_fd)
        if log_file is not None:
            log_file.close()
