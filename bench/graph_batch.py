"""Graph batch storing: the one-statement batch path against the per-row path, same run.

Stores Graph-like batches (several subscriptions per batch, new dedup keys each time) through
``ingest.store`` (PostgreSQL: one statement per batch) and through ``ingest.store_each`` (one
INSERT per row in one transaction: the development SQLite path, and formerly the PostgreSQL
one), alternating the two so that machine noise hits both alike. Reports the median time per
batch, rows per second, round trips per batch and the ratio. Its own database
(`calendar_sync_bench_batch`, recreated each run; BENCH_BATCH_DATABASE overrides the name).
Environment: BENCH_BATCH_ROUNDS (per path and size, default 60).
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import time

from bench.support import fresh_django, in_child, run_in_own_database

DB_NAME = os.environ.get("BENCH_BATCH_DATABASE", "calendar_sync_bench_batch")
SIZES = (10, 100)  # items per batch (Graph sends up to 100 or so)
SUBSCRIPTIONS = 5  # a batch mixes the subscriptions that share a notification URL
TARGET_RATIO = 2.0  # the batch statement at least twice as fast per batch of 10
_serial = itertools.count()  # dedup keys never repeat within a run


def main() -> int:
    """Run the benchmark in a fresh interpreter bound to its own database."""
    if in_child():
        return _run()
    return run_in_own_database("bench.graph_batch", DB_NAME, timeout=600)


def _subscriptions() -> list:
    from django.contrib.auth.models import User

    from apps.calendars.models import Calendar, CalendarAccount
    from apps.webhooks.models import WebhookSubscription

    user = User.objects.create(username="bench")
    account = CalendarAccount.objects.create(user=user, provider="microsoft",
                                             email="bench@example.com", refresh_token="r")
    subs = []
    for n in range(SUBSCRIPTIONS):
        calendar = Calendar.objects.create(calendar_account=account, name=f"c{n}",
                                           provider_calendar_id=f"cal-{n}")
        sub = WebhookSubscription(calendar=calendar, provider="microsoft",
                                  channel_id=f"bench-{n}", status="active")
        sub.issue_token()
        sub.save()
        subs.append(sub)
    return subs


def _measure(subs: list, size: int, rounds: int) -> dict[str, tuple[float, float]]:
    """{path: (median seconds per batch, round trips per batch)}, the paths alternating."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from apps.webhooks.services.receiving import ingest
    from apps.webhooks.services.ttl_cache import reset_all

    paths = {"batch statement": lambda batch: ingest.store(batch),
             "per row": lambda batch: ingest.store_each(batch, timezone.now(), False)}
    times: dict[str, list[float]] = {name: [] for name in paths}
    trips: dict[str, int] = {}
    # Turn 0 warms up (prepares the statement), turn 1 counts round trips (the query log
    # costs time), the others are timed.
    for turn in range(rounds + 2):
        for name, store in paths.items():
            batch = []
            for i, serial in zip(range(size), _serial, strict=False):
                batch.append(ingest.NewNotification(
                    subscription=subs[i % len(subs)], kind="change", resource_state="updated",
                    dedup_key=f"bench:{serial}", message_number=None,
                    payload={"changeType": "updated", "resource": f"Users/u/Events/{serial}"}))
            reset_all()  # both paths wake the worker every time
            if turn == 1:
                with CaptureQueriesContext(connection) as queries:
                    assert all(store(batch))
                trips[name] = len(queries)
                continue
            started = time.perf_counter()
            assert all(store(batch))
            if turn:
                times[name].append(time.perf_counter() - started)
    return {name: (statistics.median(times[name]), trips[name]) for name in paths}


def _run() -> int:
    fresh_django()
    subs = _subscriptions()
    rounds = int(os.environ.get("BENCH_BATCH_ROUNDS", "60"))
    ok = True
    for size in SIZES:
        found = _measure(subs, size, rounds)
        for name, (seconds, trips) in found.items():
            print(f"graph batch of {size}: {name:16} {seconds * 1000:7.2f} ms/batch "
                  f"{size / seconds:8.0f} rows/s  {trips} round trips", flush=True)
        ratio = found["per row"][0] / found["batch statement"][0]
        print(f"graph batch of {size}: batch statement {ratio:.1f}x the per-row path", flush=True)
        ok = ok and (ratio >= TARGET_RATIO or size != SIZES[0])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
