"""The notification worker: coalescing, retries, reclaiming, concurrency, wake-up and stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from apps.webhooks.models import WebhookNotification, WorkerHeartbeat
from apps.webhooks.services.queue.wakeup import NOTIFY_CHANNEL
from apps.webhooks.services.queue.worker import NotificationWorker
from tests.support.factories import connect_account, make_subscription, store_notifications
from tests.support.processes import ROOT, child_env
from tests.support.sandbox import Writer, call_count, local_events, out_of_step, set_faults

Status = WebhookNotification.Status


@pytest.fixture
def google_world(sandbox, user):
    """Two calendars of one Google account, each with an active subscription."""
    _, calendars, remote = connect_account(sandbox.url, user, "google", "worker@example.com",
                                           calendars=2)
    subs = [make_subscription(c)[0] for c in calendars]
    return calendars, subs, Writer(sandbox.url, remote), remote.calendar_ids


def statuses() -> Counter:
    return Counter(WebhookNotification.objects.values_list("processing_status", flat=True))


@pytest.mark.django_db
def test_many_notifications_for_a_calendar_make_one_sync(google_world, sandbox):
    (cal_a, cal_b), (sub_a, sub_b), writer, (cid_a, cid_b) = google_world
    for i in range(3):
        writer.create(cid_a, f"a{i}")
    writer.create(cid_b, "b")
    store_notifications(sub_a, 60)
    store_notifications(sub_b, 5)

    report = NotificationWorker(batch_size=100).handle_one()

    assert report.claimed == 65
    assert call_count(sandbox.url, "google.events.list") == 2  # one sync per calendar
    assert statuses() == {Status.COMPLETED: 65}
    assert all(n.processing_time_ms is not None and n.processed_at
               for n in WebhookNotification.objects.all())
    assert out_of_step(sandbox.url, [cal_a, cal_b]) == []


@pytest.mark.django_db
def test_a_failed_sync_is_retried_after_a_growing_backoff(google_world, sandbox, settings):
    settings.WORKER_RETRY_BASE_SECONDS = 10
    settings.SYNC_BACKOFF_BASE_SECONDS = 0  # isolate the worker's own backoff
    (cal_a, _), (sub_a, _), writer, (cid_a, _) = google_world
    writer.create(cid_a, "waiting")
    store_notifications(sub_a, 3)
    set_faults(sandbox.url, fail_next={"google.events.list": [500, 500]})
    worker = NotificationWorker()

    delays = []
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for attempt in (1, 2):
            worker.handle_one()
            rows = list(WebhookNotification.objects.all())
            assert {(r.processing_status, r.attempts) for r in rows} == {(Status.PENDING,
                                                                          attempt)}
            assert "transient" in rows[0].error
            delays.append((rows[0].next_attempt_at - timezone.now()).total_seconds())
            assert worker.handle_one() is None  # not due yet
            clock.shift(timedelta(seconds=delays[-1] + 0.1))
        assert 7.5 <= delays[0] <= 12.5 and 15 <= delays[1] <= 25
        worker.handle_one()
    assert statuses() == {Status.COMPLETED: 3}
    assert out_of_step(sandbox.url, [cal_a]) == []


@pytest.mark.django_db
def test_rows_fail_for_good_after_the_last_attempt(google_world, sandbox, settings):
    settings.WORKER_MAX_ATTEMPTS = 2
    settings.WORKER_RETRY_BASE_SECONDS = 0
    settings.SYNC_BACKOFF_BASE_SECONDS = 0
    (_, _), (sub_a, _), _, _ = google_world
    store_notifications(sub_a, 2)
    set_faults(sandbox.url, fail_next={"google.events.list": [503, 503]})
    worker = NotificationWorker()

    worker.handle_one()
    time.sleep(0.01)
    worker.handle_one()

    rows = list(WebhookNotification.objects.all())
    assert {(r.processing_status, r.attempts) for r in rows} == {(Status.FAILED, 2)}
    assert all("503" in r.error for r in rows)


@pytest.mark.django_db
def test_the_providers_retry_after_sets_the_next_attempt(google_world, sandbox, settings):
    settings.WORKER_RETRY_BASE_SECONDS = 1
    (_, _), (sub_a, _), _, _ = google_world
    store_notifications(sub_a, 4)
    set_faults(sandbox.url, retry_after_seconds=42, fail_next={"google.events.list": [429]})

    before = timezone.now()
    NotificationWorker().handle_one()

    for row in WebhookNotification.objects.all():
        assert row.processing_status == Status.PENDING and row.attempts == 1
        wait = (row.next_attempt_at - before).total_seconds()
        assert 42 <= wait <= 44


@pytest.mark.django_db
def test_rows_of_a_dead_worker_are_reclaimed_after_the_visibility_timeout(
        google_world, sandbox, settings):
    settings.WORKER_VISIBILITY_TIMEOUT_SECONDS = 60
    (cal_a, _), (sub_a, _), writer, (cid_a, _) = google_world
    writer.create(cid_a, "event")
    store_notifications(sub_a, 5)
    dead = NotificationWorker("dead-host:1:aaaa")
    assert len(dead.claim_batch()) == 5  # ... and then it is killed
    survivor = NotificationWorker("live-host:2:bbbb")

    assert survivor.reclaim_stuck() == 0 and survivor.handle_one() is None
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        assert survivor.reclaim_stuck() == 5
        survivor.handle_one()
    rows = list(WebhookNotification.objects.all())
    assert {(r.processing_status, r.claimed_by, r.attempts) for r in rows} == {
        (Status.COMPLETED, "live-host:2:bbbb", 1)}
    assert out_of_step(sandbox.url, [cal_a]) == []


@pytest.mark.django_db
def test_a_worker_that_lost_its_rows_does_not_finish_them(google_world, sandbox, settings):
    settings.WORKER_VISIBILITY_TIMEOUT_SECONDS = 5
    (_, _), (sub_a, _), _, _ = google_world
    store_notifications(sub_a, 2)
    slow = NotificationWorker("slow:1:aaaa")
    rows = slow.claim_batch()
    with time_machine.travel(timezone.now() + timedelta(seconds=6), tick=False):
        NotificationWorker("other:2:bbbb").reclaim_stuck()
        slow.process(rows)  # the slow one wakes up and tries to complete them
    assert statuses() == {Status.PENDING: 2}


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_process_the_same_row(sandbox, user, settings):
    settings.SYNC_BUSY_RETRY_SECONDS = 0.05
    settings.WORKER_COALESCE_SECONDS = 0  # this is about claiming, not about waiting
    settings.WORKER_BURST_MAX_WAIT_SECONDS = 0
    _, calendars, remote = connect_account(sandbox.url, user, "microsoft", "two@example.com",
                                           calendars=6)
    writer = Writer(sandbox.url, remote)
    subs = [make_subscription(c)[0] for c in calendars]
    for i in range(180):
        store_notifications(subs[i % len(subs)])
    for cid in remote.calendar_ids:
        writer.create(cid, "one")
    claims: Counter = Counter()
    deferred: Counter = Counter()
    lock = threading.Lock()

    class Recording(NotificationWorker):
        def process(self, rows):
            with lock:
                claims.update(r.pk for r in rows)
            report = super().process(rows)
            with lock:
                for o in report.outcomes:
                    if o.status == "deferred":
                        deferred.update(o.row_ids)
            return report

    def work(name: str) -> None:
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and WebhookNotification.objects.exclude(
                    processing_status=Status.COMPLETED).exists():
                Recording(name, batch_size=7).run(once=True)
                time.sleep(0.02)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(f"w{i}:{i}:0",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert statuses() == {Status.COMPLETED: 180}
    # A row is claimed once, plus once more per time it was handed back untouched (its
    # calendar was being synced by the other worker at that moment).
    assert all(claims[pk] == 1 + deferred[pk] for pk in claims) and len(claims) == 180
    workers = set(WebhookNotification.objects.values_list("claimed_by", flat=True))
    assert workers == {"w0:0:0", "w1:1:0"}  # both took part
    assert out_of_step(sandbox.url, calendars) == []


@pytest.mark.django_db(transaction=True)
def test_the_worker_wakes_on_notify_and_records_its_heartbeat(google_world, sandbox, settings):
    settings.WORKER_IDLE_POLL_SECONDS = 30  # only a NOTIFY can wake it in time
    (cal_a, _), (sub_a, _), writer, (cid_a, _) = google_world
    worker = NotificationWorker()
    thread = threading.Thread(target=lambda: (worker.run(), connection.close()))
    thread.start()
    try:
        time.sleep(0.5)  # asleep on LISTEN by now
        writer.create(cid_a, "wake up")
        (row,) = store_notifications(sub_a)
        stored = time.monotonic()
        with connection.cursor() as cur:
            cur.execute(f"NOTIFY {NOTIFY_CHANNEL}")
        while time.monotonic() - stored < 5:
            row.refresh_from_db()
            if row.processing_status == Status.COMPLETED:
                break
            time.sleep(0.02)
        assert row.processing_status == Status.COMPLETED
        assert time.monotonic() - stored < 2
        beat = WorkerHeartbeat.objects.get(worker_id=worker.worker_id)
        assert beat.stopped_at is None and beat.pid > 0
    finally:
        worker.stop()
        thread.join(10)
    beat.refresh_from_db()
    assert beat.stopped_at is not None and beat.processed_count == 1
    assert out_of_step(sandbox.url, [cal_a]) == []


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_the_worker_after_the_batch_in_hand(google_world, sandbox, tmp_path):
    (cal_a, _), (sub_a, _), writer, (cid_a, _) = google_world
    writer.create(cid_a, "slow to fetch")
    set_faults(sandbox.url, latency_ms={"google.events.list": 1500})
    store_notifications(sub_a, 3)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "process_notifications"], cwd=ROOT,
        env=child_env(tmp_path, SANDBOX_URL=sandbox.url), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not WebhookNotification.objects.filter(
                processing_status=Status.PROCESSING).exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # mid-sync
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert statuses() == {Status.COMPLETED: 3}
    assert out_of_step(sandbox.url, [cal_a]) == []
    beat = WorkerHeartbeat.objects.get()
    assert beat.stopped_at is not None and beat.processed_count == 3


@pytest.mark.django_db
def test_a_burst_right_after_a_sync_waits_and_becomes_one_more_sync(google_world, sandbox,
                                                                    settings):
    settings.WORKER_COALESCE_SECONDS = 0.5
    (cal_a, _), (sub_a, _), writer, (cid_a, _) = google_world
    worker = NotificationWorker()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        store_notifications(sub_a)
        assert worker.handle_one().claimed == 1  # a quiet calendar is synced at once
        for i in range(30):
            writer.create(cid_a, f"burst {i}")
        store_notifications(sub_a, 30)

        assert worker.handle_one() is None  # held back for the rest of the burst
        assert 0.4 <= worker.seconds_until_due(5) <= 0.5
        clock.shift(timedelta(seconds=0.5))
        assert worker.handle_one().claimed == 30

    assert call_count(sandbox.url, "google.events.list") == 2
    assert statuses() == {Status.COMPLETED: 31}
    assert out_of_step(sandbox.url, [cal_a]) == []


@pytest.mark.django_db
def test_a_missed_lifecycle_event_runs_a_catch_up_sync(sandbox, user):
    _, (calendar,), remote = connect_account(sandbox.url, user, "microsoft",
                                             "lifecycle@example.com")
    sub, _ = make_subscription(calendar)
    Writer(sandbox.url, remote).create(remote.calendar_ids[0], "lost in a throttled push")
    store_notifications(sub, kind="lifecycle", state="missed")

    NotificationWorker().handle_one()

    assert statuses() == {Status.COMPLETED: 1}
    assert out_of_step(sandbox.url, [calendar]) == []
    assert len(local_events(calendar)) == 1


@pytest.mark.django_db
def test_a_lifecycle_event_is_handled_once_even_if_its_catch_up_sync_is_retried(
        sandbox, user, settings, monkeypatch):
    from apps.webhooks.services.subscriptions import renewal

    settings.WORKER_RETRY_BASE_SECONDS = 0
    settings.SYNC_BACKOFF_BASE_SECONDS = 0
    _, (calendar,), remote = connect_account(sandbox.url, user, "microsoft", "once@example.com")
    sub, _ = make_subscription(calendar)
    store_notifications(sub, kind="lifecycle", state="missed")
    calls = []
    real = renewal.handle_lifecycle
    monkeypatch.setattr(renewal, "handle_lifecycle",
                        lambda s, event: calls.append(event) or real(s, event))
    set_faults(sandbox.url, fail_next={"graph.events.delta": [500]})
    worker = NotificationWorker()

    worker.handle_one()
    assert statuses() == {Status.PENDING: 1}
    time.sleep(0.01)
    worker.handle_one()

    assert statuses() == {Status.COMPLETED: 1} and calls == ["missed"]


@pytest.mark.django_db
def test_notifications_for_a_calendar_no_longer_syncing_are_ignored(google_world, sandbox):
    (cal_a, _), (sub_a, _), _, _ = google_world
    cal_a.sync_enabled = False
    cal_a.save(update_fields=["sync_enabled"])
    store_notifications(sub_a, 3)

    NotificationWorker().handle_one()

    assert statuses() == {Status.IGNORED: 3}
    assert call_count(sandbox.url, "google.events.list") == 0


@pytest.mark.django_db
def test_the_worker_loop_survives_an_unexpected_error(google_world, sandbox, settings,
                                                      monkeypatch):
    from apps.webhooks.services.queue import coalescing

    settings.WORKER_IDLE_POLL_SECONDS = 0.05
    (cal_a, _), (sub_a, _), writer, (cid_a, _) = google_world
    writer.create(cid_a, "after a hiccup")
    store_notifications(sub_a, 2)
    real_plan, failures = coalescing.plan, []

    def plan_failing_once(pending, now):
        if not failures:
            failures.append(now)
            raise RuntimeError("a bug in one step")
        return real_plan(pending, now)

    monkeypatch.setattr(coalescing, "plan", plan_failing_once)
    worker = NotificationWorker("worker-named-by-an-operator")
    guard = threading.Timer(20, worker.stop)
    guard.start()
    try:
        worker.run(on_batch=lambda report: worker.stop())
    finally:
        guard.cancel()

    assert failures and statuses() == {Status.COMPLETED: 2}
    assert out_of_step(sandbox.url, [cal_a]) == []
    beat = WorkerHeartbeat.objects.get(worker_id="worker-named-by-an-operator")
    assert beat.stopped_at is not None and beat.processed_count == 2
