"""Schedulers on every host: each job slot runs once across the cluster, and when the host
running a job dies (kill -9), the next slot runs on another."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest
from django.db import connection

from apps.monitoring.models import JobRun
from calendar_sync.cron import parse_crontab
from calendar_sync.scheduler import Scheduler
from tests.support.processes import ROOT, child_env

pytestmark = pytest.mark.django_db(transaction=True)

MANAGE = ROOT / "manage.py"
# Fast, network-free, and a real scheduled command of ours.
CRONTAB = "* * * * * python manage.py cleanup_webhook_data --days=30 >> $LOG_DIR/cron.log 2>&1\n"


def _host(tmp: Path, name: str) -> Scheduler:
    home = tmp / name
    home.mkdir()
    return Scheduler(parse_crontab(CRONTAB), MANAGE,
                     variables={"LOG_DIR": str(home / "log"), "LOCK_DIR": str(home)},
                     env=child_env(home, CLUSTER_HOST_NAME=name))


def _wait(*schedulers: Scheduler, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while any(s.running for s in schedulers) and time.monotonic() < deadline:
        for s in schedulers:
            s.reap()
        time.sleep(0.05)
    assert not any(s.running for s in schedulers)


def _minute(m: int) -> datetime:
    return datetime(2026, 3, 2, 10, m, tzinfo=UTC)


def test_two_schedulers_run_each_slot_once_between_them(tmp_path):
    a, b = _host(tmp_path, "host-a"), _host(tmp_path, "host-b")
    for m in range(3):
        a.tick(_minute(m))
        if m == 1:
            _wait(a)  # host-b starts late, after host-a's run finished: still skipped
        b.tick(_minute(m))
        _wait(a, b)

    runs = list(JobRun.objects.order_by("slot").values_list("slot", "outcome"))
    assert runs == [(_minute(m), "succeeded") for m in range(3)]
    logs = "".join((tmp_path / h / "log" / "cron.log").read_text() for h in ("host-a", "host-b"))
    assert logs.count("skipped cleanup_webhook_data") == 3
    assert logs.count("removing rows older than 30 days") == 3


def test_when_the_host_running_a_job_is_killed_the_next_slot_runs_on_another(tmp_path):
    a, b = _host(tmp_path, "host-a"), _host(tmp_path, "host-b")
    # Hold the job up mid-run: one of the tables it prunes stays locked.
    blocker = psycopg2.connect(**connection.get_connection_params())
    with blocker.cursor() as cur:
        cur.execute("BEGIN; LOCK TABLE monitoring_providerapicall IN ACCESS EXCLUSIVE MODE")
    try:
        a.tick(_minute(0))
        deadline = time.monotonic() + 60
        while not JobRun.objects.filter(host="host-a").exists():
            assert time.monotonic() < deadline, "host-a never started its run"
            time.sleep(0.1)
        b.tick(_minute(0))  # the same slot, while host-a's run is going: skipped
        _wait(b)
        for run in a.running.values():  # host-a dies: its job and the scheduler with it
            os.killpg(run.process.pid, signal.SIGKILL)
        _wait(a)
    finally:
        blocker.rollback()
        blocker.close()
    b.tick(_minute(1))
    _wait(b)

    dead, survivor = JobRun.objects.order_by("slot")
    assert (dead.host, dead.slot, dead.outcome) == ("host-a", _minute(0), "interrupted")
    assert (survivor.host, survivor.slot, survivor.outcome) == ("host-b", _minute(1),
                                                                 "succeeded")
    assert "going on another host" in (tmp_path / "host-b" / "log" / "cron.log").read_text()
