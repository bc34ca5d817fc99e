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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import requests

from bench.sync import free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "calendar_sync_bench_workers"
CALENDARS = int(os.environ.get("BENCH_WORKERS_CALENDARS", 120))
ACCOUNTS = 12
LATENCY_MS = 150
WORKER_COUNTS = (1, 2, 4)
TARGET_RATIO = 3.0


def main() -> int:
    if os.environ.get("BENCH_WORKERS_CHILD") == "1":
        return _run()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/calendar_sync")
    env = {**os.environ, "BENCH_WORKERS_CHILD": "1", "DJANGO_SETTINGS_MODULE": "settings.test",
           "DATABASE_URL": urlunparse(urlparse(base)._replace(path=f"/{DB_NAME}")),
           "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
           "WORKER_CONCURRENCY": "1", "WORKER_BATCH_SIZE": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.call([sys.executable, "-m", "bench.workers"], cwd=ROOT, env=env)


def _recreate_database() -> None:
    import psycopg2
    from django.conf import settings

    db = settings.DATABASES["default"]
    conn = psycopg2.connect(dbname="postgres", user=db["USER"], password=db["PASSWORD"],
                            host=db["HOST"], port=db["PORT"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{DB_NAME}"')
    conn.close()


class Sandbox:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(log_dir / "sandbox.log", "w")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", str(self.port), "--workers", "16"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/_sandbox/health")

    def faults(self, **config) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json=config, timeout=10).raise_for_status()

    def list_calls(self) -> int:
        counters = requests.get(f"{self.url}/_sandbox/state", timeout=10).json()["counters"]
        return int(counters.get("google.events.list", 0))

    def endpoints(self) -> dict[str, str]:
        """The provider endpoints, pointed at this sandbox (settings and environment)."""
        names = ("GOOGLE_API_BASE_URL", "GOOGLE_OAUTH_BASE_URL", "MS_GRAPH_BASE_URL",
                 "MS_LOGIN_BASE_URL")
        return {**dict.fromkeys(names, self.url), "GOOGLE_TOKEN_URL": f"{self.url}/token",
                "SANDBOX_URL": self.url}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def _calendars(sandbox: Sandbox) -> list:
    """Accounts connected through the sandbox, each calendar synced once and subscribed."""
    from django.conf import settings
    from django.contrib.auth.models import User

    from apps.calendars.models import Calendar, CalendarAccount
    from apps.calendars.services.sync_engine import sync_calendar
    from apps.webhooks.models import WebhookSubscription

    for name, value in sandbox.endpoints().items():
        setattr(settings, name, value)
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
    procs = []
    for i in range(workers):
        log = open(log_dir / f"worker-{run}-{i}.log", "w")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "manage.py", "process_notifications"],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
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
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    twice = rows.exclude(attempts=0).count()  # a retry or a reclaim counts an attempt
    return rows.count() / elapsed, twice


def _run() -> int:
    import django

    django.setup()
    _recreate_database()
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                   check=True)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        sandbox = Sandbox(Path(tmp))
        try:
            calendars = _calendars(sandbox)
            sandbox.faults(latency_ms={"*": LATENCY_MS})
            rates = {}
            failures = 0
            env = {**os.environ, **sandbox.endpoints()}
            for run, workers in enumerate(WORKER_COUNTS):
                before = sandbox.list_calls()
                rate, twice = _drain(workers, run, Path(tmp), env)
                calls = sandbox.list_calls() - before
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
