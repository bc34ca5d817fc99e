"""A worker that heals: PostgreSQL (a private server of the test's own) restarts while the
worker is inside a slowed provider call. The worker reconnects by itself, hands back the rows
it held as soon as the database answers, and processes new work, without a restart."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from apps.webhooks.models import WebhookNotification
from bench.support import free_port
from tests.support.factories import connect_account, make_subscription, store_notifications
from tests.support.outages import private_database
from tests.support.processes import ROOT, Processes, child_env
from tests.support.sandbox import set_faults

Status = WebhookNotification.Status
pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def _statuses(rows: list) -> set[str]:
    return set(WebhookNotification.objects.filter(pk__in=[r.pk for r in rows])
               .values_list("processing_status", flat=True))


def test_the_worker_recovers_after_a_database_restart_mid_sync(sandbox, user, tmp_path):
    with private_database() as server:
        _restart_under_the_worker(server, sandbox, user, tmp_path)


def _restart_under_the_worker(server, sandbox, user, tmp_path) -> None:
    _, (slow_cal, other_cal), remote = connect_account(sandbox.url, user, "google",
                                                       "heal@example.com", calendars=2)
    (slow_sub, _), (other_sub, _) = make_subscription(slow_cal), make_subscription(other_cal)
    set_faults(sandbox.url, latency_ms={"google.events.list": 4000})
    held = store_notifications(slow_sub, 20)
    env = child_env(tmp_path, SANDBOX_URL=sandbox.url, WORKER_IDLE_POLL_SECONDS="0.5",
                    WORKER_VISIBILITY_TIMEOUT_SECONDS="600", WORKER_MAX_STALL_SECONDS="300")
    with Processes(tmp_path) as procs:
        worker = procs.start("worker", [sys.executable, "manage.py", "process_notifications"],
                             env)
        _wait_for(lambda: _statuses(held) == {Status.PROCESSING}, 60, "the rows claimed")
        time.sleep(0.5)  # inside the slowed provider call
        server.restart(outage_seconds=5)
        set_faults(sandbox.url, latency_ms={"google.events.list": 0})

        back = _wait_for(lambda: Status.PROCESSING not in _statuses(held), 120,
                         "the claimed rows handed back")
        fresh = store_notifications(other_sub, 3)
        done = _wait_for(lambda: _statuses(fresh) == {Status.COMPLETED}, 60,
                         "new notifications processed")
        _wait_for(lambda: _statuses(held) == {Status.COMPLETED}, 60, "the held rows completed")
        assert worker.poll() is None, procs.output("worker")
        assert "handed back 20 notification(s)" in procs.output("worker")

    attempts = set(WebhookNotification.objects.filter(pk__in=[r.pk for r in held])
                   .values_list("attempts", flat=True))
    assert attempts == {1}  # the interrupted attempt was counted, once
    assert back < 30 and done < 60
    print(f"\nworker recovery: claimed rows back {back:.1f}s and new notifications done "
          f"{done:.1f}s after the database returned", file=sys.stderr)
    assert "Traceback" not in procs.output("worker")


def test_a_worker_that_cannot_reach_the_database_exits_for_its_supervisor(sandbox, tmp_path):
    nowhere = f"postgres://postgres@127.0.0.1:{free_port()}/calendar_sync"
    env = child_env(tmp_path, SANDBOX_URL=sandbox.url, DATABASE_URL=nowhere,
                    WORKER_MAX_STALL_SECONDS="10",
                    WORKER_IDLE_POLL_SECONDS="0.5")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "manage.py", "process_notifications"], env=env,
                          cwd=ROOT, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no progress for" in done.stderr
    assert 10 <= time.monotonic() - started < 60
    assert "Traceback" not in done.stdout + done.stderr
