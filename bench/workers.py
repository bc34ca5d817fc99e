"""Worker scale-out: the drain rate of 1, 2 and 4 ``process_notifications`` processes over the
same backlog, with the sandbox adding 150 ms to every provider call (as real providers do).

Each run: the same calendars get one stored notification each (one INSERT, then NOTIFY), the
workers (already running and idle) drain them; the drain rate is notifications completed per
second from the INSERT to the last completion. Each worker syncs one calendar at a time
(``WORKER_CONCURRENCY=1``) and claims small batches, so that the number of processes is the
only thing that changes. Afterwards no notification may have been retried or reclaimed
(attempts 0) and the sandbox must have answered exactly one change listing per calendar:
nothing processed twice.

Target: 4 workers drain >= 3x what one does. Its own database
(`calendar_sync_bench_workers`, recreated each run). `python -m bench workers` runs it alone.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.support import Sandbox, fresh_django, in_child, run_in_own_database, spawn, stop

DB_NAME = "calendar_sync_bench_workers"
CALENDARS = int(os.environ.get("BENCH_WORKERS_CALENDARS", 120))
ACCOUNTS = 12
LATENCY_MS = 150
WORKER_COUNTS = (1, 2, 4)
TARGET_RATIO = 3.0


def main() -> int:
    if in_child():
        return _run()
    return run_in_own_database("bench.workers", DB_NAME, WORKER_CONCURRENCY="1",
                               WORKER_BATCH_SIZE="2")


def _list_calls(sandbox: Sandbox) -> int:
    return sandbox.counter("google.events.list")


def _calendars(sandbox: Sandbox) -> list:
    """Accounts connected through the sandbox, each calendar synced once and subscribed."""
    from django.contrib.auth.models import User

    from apps.calendars.models import Calendar, CalendarAccount
    from apps.calendars.services.sync_engine import sync_calendar
    from apps.webhooks.models import WebhookSubscription

    sandbox.point_settings_here()
    user = User.objects.create(username="bench")
    calendars = []
    for a in range(ACCOUNTS):
        data = requests.post(f"{sandbox.url}/_sandbox/accounts", timeout=10, json={
            "provider": "google", "email": f"w{a}@example.com",
            "calendars": CALENDARS // ACCOUNTS}).json()
        account = CalendarAccount.objects.create(user=user, provider="google",
                                                 email=f"w{a}@example.com",
                                                 refresh_token=data["refresh_token"])
        for cal in data["calendars"]:
            calendar = Calendar.objects.create(calendar_account=account,
                                               provider_calendar_id=cal["id"], name=cal["id"])
            sync_calendar(calendar)  # cursor and access token in place before timing
            WebhookSubscription.objects.create(calendar=calendar, provider="google",
                                               channel_id=f"chan-{calendar.pk}",
                                               resource_id=f"res-{calendar.pk}", status="active")
            calendars.append(calendar)
    return calendars


def _backlog(run: int) -> None:
    """One notification per calendar, stored in one statement, and the workers woken."""
    from django.db import connection, transaction
    from django.utils import timezone

    from apps.calendars.models import Calendar
    from apps.webhooks.models import WebhookNotification, WebhookSubscription
    from apps.webhooks.services.queue.wakeup import NOTIFY_CHANNEL

    now = timezone.now()
    # Long enough after the previous sync that no coalescing cooldown holds a calendar back.
    Calendar.objects.update(last_synced_at=now - timezone.timedelta(hours=1))
    with transaction.atomic():
        WebhookNotification.objects.bulk_create([
            WebhookNotification(subscription=s, provider="google", received_at=now,
                                resource_state="exists", dedup_key=f"r{run}-{s.pk}")
            for s in WebhookSubscription.objects.all()])
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")


def _drain(workers: int, run: int, log_dir: Path, env: dict) -> tuple[float, int]:
    from apps.webhooks.models import WebhookNotification, WorkerHeartbeat

    WorkerHeartbeat.objects.all().delete()
    procs = [spawn([sys.executable, "manage.py", "process_notifications"],
                   log_dir / f"worker-{run}-{i}.log", env) for i in range(workers)]
    try:
        deadline = time.monotonic() + 60
        while WorkerHeartbeat.objects.filter(stopped_at__isnull=True).count() < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.1)
        started = time.monotonic()
        _backlog(run)
        rows = WebhookNotification.objects.filter(dedup_key__startswith=f"r{run}-")
        while rows.exclude(processing_status="completed").exists():
            if time.monotonic() - started > 120:
                tail = (log_dir / f"worker-{run}-0.log").read_text()[-2000:]
                raise RuntimeError(f"backlog not drained within 120 s; worker log:\n{tail}")
            time.sleep(0.02)
        elapsed = time.monotonic() - started
    finally:
        stop(procs, 30)
    twice = rows.exclude(attempts=0).count()  # a retry or a reclaim counts an attempt
    return rows.count() / elapsed, twice


def _run() -> int:
    fresh_django()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        sandbox = Sandbox(Path(tmp), 16)
        try:
            calendars = _calendars(sandbox)
            sandbox.faults(latency_ms={"*": LATENCY_MS})
            rates = {}
            failures = 0
            env = {**os.environ, **sandbox.endpoints()}
            for run, workers in enumerate(WORKER_COUNTS):
                before = _list_calls(sandbox)
                rate, twice = _drain(workers, run, Path(tmp), env)
                calls = _list_calls(sandbox) - before
                rates[workers] = rate
                clean = twice == 0 and calls == len(calendars)
                failures += not clean
                print(f"  {workers} worker(s): {len(calendars)} notifications at "
                      f"{rate:5.1f}/s ({rate / rates[1]:.2f}x one worker); provider list "
                      f"calls {calls} for {len(calendars)} calendars; retried or repeated "
                      f"{twice} {'ok' if clean else 'PROCESSED TWICE'}", flush=True)
        finally:
            sandbox.stop()
    ratio = rates[4] / rates[1]
    ok = ratio >= TARGET_RATIO
    print(f"workers: 4 workers drain {ratio:.2f}x one (target >= {TARGET_RATIO}x) "
          f"{'PASS' if ok else 'MISS'}", flush=True)
    return 0 if ok and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
