"""Deploys lose nothing: gunicorn reloaded with HUP under a steady stream of notifications, and
the worker stopped with SIGTERM in the middle of a batch."""

from __future__ import annotations

import http.client
import itertools
import signal
import subprocess
import sys
import threading
import time

import pytest

from apps.webhooks.models import WebhookNotification
from tests.support.factories import connect_account, make_subscription, store_notifications
from tests.support.processes import ROOT, child_env
from tests.support.sandbox import Writer, set_faults

from .procs import Gunicorn

pytestmark = pytest.mark.slow


def _notify(port: int, sub, token: str, number: int) -> int:
    # A fresh connection per request, as nginx opens one per request to the upstream.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/webhooks/google/", headers={
            "X-Goog-Channel-ID": sub.channel_id, "X-Goog-Channel-Token": token,
            "X-Goog-Resource-ID": sub.resource_id, "X-Goog-Resource-URI": sub.resource_uri,
            "X-Goog-Resource-State": "exists", "X-Goog-Message-Number": str(number),
            "Content-Length": "0", "Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError as exc:  # refused / reset: exactly what a reload must never cause
        return -abs(getattr(exc, "errno", 1) or 1)
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_a_gunicorn_reload_under_steady_notifications_loses_none(tmp_path,
                                                                  capsys):
    sub, token = make_subscription(channel_id="during-reload", resource_id="res-during-reload")
    app = Gunicorn(tmp_path, workers=2, threads=4).start()
    numbers = itertools.count(1)
    results: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def provider() -> None:
        while not stop.is_set():
            with lock:
                number = next(numbers)
            status = _notify(app.port, sub, token, number)
            with lock:
                results.append(status)

    try:
        first_workers = app.worker_pids()
        clients = [threading.Thread(target=provider) for _ in range(8)]
        for c in clients:
            c.start()
        time.sleep(1.5)
        app.proc.send_signal(signal.SIGHUP)  # what a deploy does after updating the code
        time.sleep(2.5)
        app.proc.send_signal(signal.SIGHUP)
        time.sleep(2.5)
        stop.set()
        for c in clients:
            c.join(timeout=60)
        new_workers = app.worker_pids()
    finally:
        app.stop()

    # The workers were really replaced (twice), and not one request failed meanwhile.
    assert new_workers and not new_workers & first_workers
    assert app.output().count("Handling signal: hup") == 2
    assert len(results) > 100
    assert [s for s in results if s != 200] == []
    assert WebhookNotification.objects.filter(subscription=sub).count() == len(results)
    with capsys.disabled():
        print(f"\n[zero-downtime] {len(results)} notifications across 2 HUP reloads: "
              f"{results.count(200)} answered 200, {len(results) - results.count(200)} lost; "
              f"{WebhookNotification.objects.filter(subscription=sub).count()} stored")


@pytest.mark.django_db(transaction=True)
def test_the_worker_stopped_with_sigterm_finishes_its_batch(sandbox, user, capsys, tmp_path):
    from apps.calendars.models import Event

    # Three calendars with events, each with stored notifications; every events.list takes
    # 1.5 s so that the SIGTERM lands in the middle of the batch.
    calendars = []
    for i in range(3):
        _, (calendar,), remote = connect_account(sandbox.url, user, "google",
                                                 f"sigterm{i}@example.com")
        writer = Writer(sandbox.url, remote)
        for n in range(3):
            writer.create(remote.calendar_ids[0], f"meeting {i}.{n}")
        store_notifications(make_subscription(calendar)[0], count=4)
        calendars.append(calendar)
    set_faults(sandbox.url, latency_ms={"google.events.list": 1500})

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "process_notifications", "-v", "2"], cwd=ROOT,
        env=child_env(tmp_path, SANDBOX_URL=sandbox.url), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)
    try:
        deadline = time.monotonic() + 60
        claimed: list[int] = []
        while not claimed and time.monotonic() < deadline and worker.poll() is None:
            claimed = list(WebhookNotification.objects.filter(
                processing_status="processing").values_list("pk", flat=True))
            time.sleep(0.05)
        assert claimed, "the worker never claimed a batch"
        sent_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=90)
        took = time.monotonic() - sent_at
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert worker.returncode == 0, output
    assert "stopped after" in output
    # Every row it had claimed was finished (synced, not abandoned in `processing`)...
    rows = WebhookNotification.objects.filter(pk__in=claimed)
    assert set(rows.values_list("processing_status", flat=True)) == {"completed"}, output
    assert not WebhookNotification.objects.filter(processing_status="processing").exists()
    # ...and the calendars of those rows really were synced.
    synced = set(rows.values_list("subscription__calendar_id", flat=True))
    for calendar in calendars:
        if calendar.pk in synced:
            assert Event.objects.filter(calendar=calendar).count() == 3
    with capsys.disabled():
        print(f"\n[zero-downtime] worker SIGTERM mid-batch: {len(claimed)} claimed rows all "
              f"completed, exited 0 after {took:.1f}s")
