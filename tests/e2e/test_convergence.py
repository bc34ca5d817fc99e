"""The proof: under lost, duplicated and reordered pushes, throttling, server errors, an expired
sync token and a worker killed with SIGKILL, every local calendar ends equal to the provider's.

Real processes: the sandbox (in this process) pushes over HTTP to gunicorn (the receivers),
which store notifications in this test's PostgreSQL database; two `process_notifications`
workers sync from the sandbox. Then one polling pass, as the scheduler would run it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sys
import time
from dataclasses import dataclass, field

import pytest

from apps.monitoring.models import ProviderApiCall
from apps.webhooks.models import WebhookNotification, WorkerHeartbeat
from bench.support import free_port, wait_http
from tests.support.factories import connect_account, synced_and_subscribed
from tests.support.processes import Processes, child_env
from tests.support.sandbox import (
    Writer,
    local_events,
    out_of_step,
    sandbox_state,
    set_faults,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OPERATIONS = 400
OPS_PER_SECOND = 25
SYNC_LINE = re.compile(r"status=(\w+) kind=(\w+) created=(\d+) updated=(\d+) deleted=(\d+)")
FAULTS = {
    "notifications": {"drop_rate": 0.1, "duplicate_rate": 0.2, "reorder": True,
                      "reorder_window_ms": 150},
    "error_rates": {"google.events.list": {"429": 0.05, "500": 0.05},
                    "graph.events.delta": {"429": 0.05, "503": 0.05}},
    "latency_ms": {"google.events.list": 15, "graph.events.delta": 15},
    "retry_after_seconds": 1,
}


@dataclass
class Workload:
    """Random changes, made the way a user's calendar app makes them."""

    rng: random.Random
    targets: list[tuple[Writer, str]]  # (writer, provider calendar id)
    live: dict[str, list[str]] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=lambda: {"create": 0, "update": 0,
                                                         "delete": 0})

    def step(self) -> None:
        writer, cid = self.rng.choice(self.targets)
        events = self.live.setdefault(cid, [])
        roll = self.rng.random()
        if not events or roll < 0.45:
            events.append(writer.create(cid)["id"])
            self.done["create"] += 1
        elif roll < 0.8:
            writer.rename(cid, self.rng.choice(events), f"renamed {self.rng.random():.6f}")
            self.done["update"] += 1
        else:
            writer.delete(cid, events.pop(self.rng.randrange(len(events))))
            self.done["delete"] += 1


def test_every_calendar_converges_under_faults(sandbox, user, settings, tmp_path):
    started = time.monotonic()
    port = free_port()
    settings.WEBHOOK_BASE_URL = f"http://127.0.0.1:{port}"
    set_faults(sandbox.url, push_retry_base_seconds=0.2, notification_batch_ms=50)
    env = child_env(
        tmp_path, SANDBOX_URL=sandbox.url, WEBHOOK_BASE_URL=settings.WEBHOOK_BASE_URL,
        GUNICORN_WORKERS=2,
        GUNICORN_ACCESS_LOG="/dev/null", WORKER_VISIBILITY_TIMEOUT_SECONDS=6,
        WORKER_RETRY_BASE_SECONDS=0.3, WORKER_RETRY_MAX_SECONDS=3, WORKER_MAX_ATTEMPTS=30,
        SYNC_BACKOFF_BASE_SECONDS=0.3, SYNC_BACKOFF_MAX_SECONDS=3, WORKER_IDLE_POLL_SECONDS=0.5,
    )
    with Processes(tmp_path) as procs:
        procs.start("web", [sys.executable, "-m", "gunicorn", "calendar_sync.wsgi:application",
                            "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                            "--no-control-socket"], env)
        wait_http(f"{settings.WEBHOOK_BASE_URL}/webhooks/health/")
        calendars, targets = _connect_and_subscribe(sandbox, user)
        workers = [procs.start(f"worker-{i}", [sys.executable, "manage.py",
                                               "process_notifications", "-v", "2"], env)
                   for i in (1, 2)]
        _wait_for_heartbeats(2)
        set_faults(sandbox.url, **FAULTS)
        workload = Workload(random.Random(20240611), targets)
        orphaned = _run(workload, sandbox, victim=workers[0])
        _lose_every_push_of_the_last_changes(workload, sandbox)
        set_faults(sandbox.url, clear=True, push_retry_base_seconds=0.2)
        assert sandbox.pusher.wait_idle(timeout=30), "the sandbox still has pushes in flight"
        _wait_until_drained(seconds=45)
        applied = _count_applied(procs.output("worker-1") + procs.output("worker-2"))
        before_poll = {c.pk: local_events(c) for c in calendars}
        _polling_pass(settings)
    applied = _add_poll_changes(applied, before_poll, calendars)

    assert out_of_step(sandbox.url, calendars) == []
    stuck = WebhookNotification.objects.waiting()
    assert not stuck.exists()
    assert not WebhookNotification.objects.filter(processing_status="failed").exists()
    # What the killed worker held was reclaimed after the visibility timeout and finished.
    assert orphaned, "the worker was not killed mid-batch"
    for row in WebhookNotification.objects.filter(pk__in=orphaned):
        assert row.processing_status == "completed" and row.attempts >= 1
        assert f":{workers[0].pid}:" not in row.claimed_by
    # No change applied twice: every applied create/update/delete maps to a distinct change.
    assert applied["created"] <= workload.done["create"]
    assert applied["updated"] <= workload.done["update"]
    assert applied["deleted"] <= workload.done["delete"]
    elapsed = time.monotonic() - started
    assert applied["poll_changes"] >= 1  # the safety net caught what push never announced
    assert applied["full"] >= 1  # the expired sync tokens were met with full resyncs
    _report(workload, sandbox_state(sandbox.url), applied, elapsed, len(orphaned))
    assert elapsed < 120


def _connect_and_subscribe(sandbox, user):
    calendars, targets = [], []
    for provider in ("google", "microsoft"):
        for n in (1, 2):
            _, cals, remote = connect_account(sandbox.url, user, provider,
                                              f"{provider}{n}@example.com", calendars=2)
            writer = Writer(sandbox.url, remote)
            for calendar in cals:
                synced_and_subscribed(calendar)
                calendars.append(calendar)
                targets.append((writer, calendar.provider_calendar_id))
    return calendars, targets


def _run(workload: Workload, sandbox, victim) -> list[int]:
    """The changes, paced. From a third on, the first worker is SIGKILLed as soon as it holds
    claimed rows (mid-batch); at half, every sync token expires. Returns the rows it held."""
    held: list[int] = []
    for i in range(OPERATIONS):
        tick = time.monotonic()
        workload.step()
        if OPERATIONS // 3 <= i and victim.poll() is None:
            held = list(WebhookNotification.objects.filter(
                processing_status="processing", claimed_by__contains=f":{victim.pid}:",
            ).values_list("pk", flat=True))
            if held or i == OPERATIONS // 2:
                os.kill(victim.pid, signal.SIGKILL)
        if i == OPERATIONS // 2:
            set_faults(sandbox.url, expire_sync_tokens=True)
        time.sleep(max(0.0, 1 / OPS_PER_SECOND - (time.monotonic() - tick)))
    assert victim.wait(5) == -signal.SIGKILL
    return held


def _lose_every_push_of_the_last_changes(workload: Workload, sandbox) -> None:
    """Once everything so far is synced, three more changes whose pushes are all lost: only
    the polling pass can bring them in."""
    assert sandbox.pusher.wait_idle(timeout=30)
    _wait_until_drained(seconds=45)
    set_faults(sandbox.url, notifications={"drop_rate": 1.0, "duplicate_rate": 0.0,
                                           "reorder": False})
    for _ in range(3):
        workload.step()


def _wait_for_heartbeats(count: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while WorkerHeartbeat.objects.filter(stopped_at__isnull=True).count() < count:
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.1)


def _wait_until_drained(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    open_rows = WebhookNotification.objects.waiting()
    while open_rows.exists():
        assert time.monotonic() < deadline, list(
            open_rows.values("processing_status", "attempts", "error")[:5])
        time.sleep(0.2)


def _polling_pass(settings) -> None:
    """The scheduler's polling pass, at the moment every calendar is due and stale."""
    from django.core.management import call_command

    settings.POLL_INTERVAL_SECONDS = 0
    settings.POLL_STALENESS_SECONDS = 0
    call_command("poll_calendars", "--once")


def _count_applied(worker_output: str) -> dict[str, int]:
    totals = {"created": 0, "updated": 0, "deleted": 0, "syncs": 0, "full": 0}
    for status, kind, created, updated, deleted in SYNC_LINE.findall(worker_output):
        totals["created"] += int(created)
        totals["updated"] += int(updated)
        totals["deleted"] += int(deleted)
        totals["syncs"] += status == "completed"
        totals["full"] += status == "completed" and kind == "full"
    return totals


def _add_poll_changes(applied, before, calendars) -> dict[str, int]:
    for calendar in calendars:
        old, new = before[calendar.pk], local_events(calendar)
        applied["created"] += len(new.keys() - old.keys())
        applied["deleted"] += len(old.keys() - new.keys())
        applied["updated"] += sum(1 for k in new.keys() & old.keys() if new[k] != old[k])
        applied["poll_changes"] = applied.get("poll_changes", 0) + (new != old)
    return applied


def _report(workload, state, applied, elapsed, orphaned) -> None:
    deliveries = state["deliveries"].values()
    calls = ProviderApiCall.objects.filter(operation__in=["events.list", "events.delta"])
    print(
        f"\nconvergence: {sum(workload.done.values())} changes {workload.done}; "
        f"{WebhookNotification.objects.count()} notifications stored; "
        f"pushes dropped={sum(d['dropped'] for d in deliveries)} "
        f"duplicated={sum(d['duplicated'] for d in deliveries)} (reordered, 150 ms windows); "
        f"list calls={calls.count()} 429={calls.filter(status_code=429).count()} "
        f"5xx={calls.filter(status_code__gte=500).count()}; 1 sync-token expiry; "
        f"1 worker SIGKILLed holding {orphaned} rows (reclaimed); "
        f"completed worker syncs={applied['syncs']} (full resyncs {applied['full']}) "
        f"applied={ {k: applied[k] for k in ('created', 'updated', 'deleted')} }; "
        f"calendars changed by the polling pass={applied.get('poll_changes', 0)}; "
        f"{elapsed:.1f}s",
        file=sys.stderr,
    )
