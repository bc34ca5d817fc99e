"""The rehearsal of a two-host deployment: each "host" runs gunicorn, a worker and a scheduler
against one PostgreSQL (a private server, restarted once) and the provider sandbox. Pushes for
50 calendars arrive on both hosts; one host is killed with SIGKILL mid-run, then the database
restarts. Every calendar converges, every scheduled job keeps its once-a-minute cadence on the
surviving host, the lost host is alerted, and every acknowledged notification is processed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from apps.monitoring.models import Incident, JobRun
from apps.webhooks.models import WebhookNotification
from bench.support import free_port, wait_http
from tests.support.factories import connect_account, synced_and_subscribed
from tests.support.outages import private_database
from tests.support.processes import ROOT, child_env
from tests.support.sandbox import (
    Writer,
    out_of_step,
    set_faults,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CRONTAB = "".join(f"* * * * * python manage.py {job} >> $LOG_DIR/cron.log 2>&1\n" for job in (
    "webhook_health_check --send-alerts", "poll_calendars --once", "subscription_maintenance"))
JOBS = ("health_report", "poll_calendars", "subscription_maintenance")


class Host:
    """gunicorn, a worker and a scheduler, each in its own process group (so that the whole
    host can be killed at once, as a power cut would)."""

    def __init__(self, name: str, tmp: Path, env: dict[str, str]) -> None:
        self.name, self.port, self.dir = name, free_port(), tmp / name
        self.dir.mkdir()
        (self.dir / "crontab").write_text(CRONTAB)
        self.env = {**env, "CLUSTER_HOST_NAME": name, "LOG_DIR": str(self.dir),
                    "WEBHOOK_BASE_URL": self.url}
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Host:
        py, manage = sys.executable, "manage.py"
        for name, argv in (
            ("web", [py, "-m", "gunicorn", "calendar_sync.wsgi:application", "-c",
                     "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}",
                     "--no-control-socket", "--workers", "2"]),
            ("worker", [py, manage, "process_notifications"]),
            ("scheduler", [py, manage, "run_scheduler", "--crontab",
                           str(self.dir / "crontab")]),
        ):
            log = open(self.dir / f"{name}.log", "w")  # noqa: SIM115 - the process keeps it
            self.procs.append(subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT,
                                               start_new_session=True))
        wait_http(f"{self.url}/webhooks/health/", 60)
        return self

    def kill(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_two_hosts_survive_losing_one_and_a_database_restart(sandbox, user, settings,
                                                             tmp_path):
    started = time.monotonic()
    with private_database() as db:
        env = child_env(
            tmp_path, SANDBOX_URL=sandbox.url, GUNICORN_ACCESS_LOG="/dev/null",
            WORKER_IDLE_POLL_SECONDS="0.5",
            WORKER_VISIBILITY_TIMEOUT_SECONDS="8", WORKER_HEARTBEAT_STALE_SECONDS="8",
            WORKER_RETRY_BASE_SECONDS="0.3", WORKER_RETRY_MAX_SECONDS="3",
            WEBHOOK_ALERT_CHANNELS="webhook",
            EXTERNAL_ALERT_WEBHOOK_URL=f"{sandbox.url}/_sandbox/sinks/webhook/alerts")
        hosts = [Host(name, tmp_path, env) for name in ("host-a", "host-b")]
        try:
            for host in hosts:
                host.start()
            set_faults(sandbox.url, push_retry_base_seconds=0.2, notification_batch_ms=50)
            calendars, targets = _fifty_calendars(sandbox, user, settings, hosts)
            traffic = _Traffic(targets)
            traffic.start()
            time.sleep(3)
            hosts[0].kill()
            time.sleep(3)
            outage = [datetime.now(UTC)]
            db.restart(outage_seconds=3)
            outage.append(datetime.now(UTC))
            time.sleep(4)
            traffic.stop()
            alert = _wait_for_the_lost_host_alert(sandbox, seconds=75)
            assert sandbox.pusher.wait_idle(timeout=30)
            polled = _converge(calendars, settings, seconds=30)
            _assert_cadence(*outage)
            _assert_nothing_acknowledged_is_lost()
            runs = list(JobRun.objects.order_by("slot", "job").values_list(
                "job", "slot", "host", "outcome"))
            stored = WebhookNotification.objects.count()
        finally:
            for host in hosts:
                host.stop()
    assert "host-a" in alert["title"]
    print(f"\nmulti-host: {len(calendars)} calendars, {traffic.done} changes, "
          f"{stored} notifications stored, extra polling passes "
          f"{polled}, job runs {[(j, f'{s:%H:%M}', h, o) for j, s, h, o in runs]}, "
          f"{time.monotonic() - started:.0f}s", file=sys.stderr)


def _fifty_calendars(sandbox, user, settings, hosts) -> tuple[list, list]:
    calendars, targets = [], []
    for n in range(25):
        provider = "google" if n % 2 else "microsoft"
        _, cals, remote = connect_account(sandbox.url, user, provider, f"user{n}@example.com",
                                          calendars=2)
        writer = Writer(sandbox.url, remote)
        for calendar in cals:
            # Half the channels deliver to each host (a load balancer's share).
            settings.WEBHOOK_BASE_URL = hosts[len(calendars) % 2].url
            synced_and_subscribed(calendar)
            calendars.append(calendar)
            targets.append((writer, calendar.provider_calendar_id))
    return calendars, targets


class _Traffic(threading.Thread):
    """Users changing their calendars at a steady pace."""

    def __init__(self, targets: list) -> None:
        super().__init__(daemon=True)
        self.targets, self.rng, self.done = targets, random.Random(7), 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.05):
            writer, cid = self.rng.choice(self.targets)
            writer.create(cid, f"change {self.done}")
            self.done += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def _wait_for_the_lost_host_alert(sandbox, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = requests.get(f"{sandbox.url}/_sandbox/sinks", timeout=5).json()["webhook"]
        lost = [e["body"] for e in got if e["body"]["incident_key"] == "worker_host_lost"]
        if lost:
            assert len(lost) == 1  # once
            return lost[0]
        time.sleep(1)
    raise AssertionError("the lost host was not alerted")


def _converge(calendars, settings, seconds: float) -> int:
    """Wait for the worker and the scheduler's polling; changes pushed to the dead host are
    the polling's to bring in, so one pass is run here if the clock has not reached it."""
    from apps.calendars.services.polling import poll_due_calendars

    deadline, polled = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        behind = out_of_step(settings.SANDBOX_URL, calendars)
        if not behind:
            return polled
        if time.monotonic() > deadline - seconds / 2:
            polled += 1
            settings.POLL_INTERVAL_SECONDS = settings.POLL_STALENESS_SECONDS = 0
            poll_due_calendars(is_covered=lambda calendar: False)
        time.sleep(1)
    raise AssertionError(f"{len(behind)} calendars did not converge")


def _assert_cadence(outage_began: datetime, outage_ended: datetime) -> None:
    """Each job ran once per minute slot, on host-b after host-a died. The one slot a job may
    lack is one that began while the database was down (a run that cannot reach it runs
    unrecorded; a command needs a few seconds to start, hence the margin)."""
    for job in JOBS:
        runs = list(JobRun.objects.filter(job=job).order_by("slot"))
        slots = [r.slot for r in runs]
        assert len(slots) >= 2, (job, slots)
        assert len(set(slots)) == len(slots), (job, slots)
        expected = {slots[0] + timedelta(minutes=n)
                    for n in range(int((slots[-1] - slots[0]) / timedelta(minutes=1)) + 1)}
        for missing in expected - set(slots):
            assert outage_began - timedelta(seconds=20) <= missing <= outage_ended, (
                job, slots, outage_began, outage_ended)
        assert {r.host for r in runs[1:]} <= {"host-a", "host-b"}
        assert runs[-1].host == "host-b"


def _assert_nothing_acknowledged_is_lost() -> None:
    deadline = time.monotonic() + 30
    open_rows = WebhookNotification.objects.waiting()
    while open_rows.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not open_rows.exists()
    assert not WebhookNotification.objects.filter(processing_status="failed").exists()
    assert Incident.objects.filter(key="worker_host_lost").exists()
