"""The storing service behind the receivers: dedup, forward-only subscription progress,
additive hourly counters and orphan upserts — exact under concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connections
from webhook_cases import make_subscription

from apps.webhooks.models import WebhookNotification
from apps.webhooks.services import ingest

pytestmark = pytest.mark.usefixtures("fresh_receiver_state")


def run_together(n: int, work) -> None:
    """Start ``n`` threads at the same instant, each with its own database connection."""
    barrier = threading.Barrier(n)
    errors = []

    def body(i):
        try:
            barrier.wait()
            work(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def notification(subscription, n: int) -> ingest.NewNotification:
    return ingest.NewNotification(subscription=subscription, kind="change",
                                  resource_state="exists",
                                  dedup_key=f"google:{subscription.channel_id}:{n}",
                                  message_number=n)


@pytest.mark.django_db(transaction=True)
def test_concurrent_stores_of_one_notification_keep_one_row(google_calendar):
    sub, _ = make_subscription(google_calendar, "google")
    results = []
    run_together(6, lambda i: results.extend(ingest.store([notification(sub, 5)])))
    assert sorted(results) == [False] * 5 + [True]
    assert WebhookNotification.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_last_message_number_only_moves_forward_under_concurrency(google_calendar):
    sub, _ = make_subscription(google_calendar, "google")
    numbers = [7, 3, 12, 9, 1, 11, 4, 10]
    run_together(len(numbers), lambda i: ingest.store([notification(sub, numbers[i])]))
    sub.refresh_from_db()
    assert sub.last_message_number == 12
    assert WebhookNotification.objects.count() == len(numbers)


@pytest.mark.django_db
def test_a_batch_reports_duplicates_item_by_item(google_calendar):
    sub, _ = make_subscription(google_calendar, "google")
    ingest.store([notification(sub, 1)])
    results = ingest.store([notification(sub, 1), notification(sub, 2), notification(sub, 2)])
    assert results == [False, True, False]
    sub.refresh_from_db()
    assert sub.last_message_number == 2


@pytest.mark.django_db
@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_last_heard_moves_forward_in_steps_of_a_minute(google_calendar, batch):
    sub, _ = make_subscription(google_calendar, "google")
    start = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)

    def store_at(offset: int, n: int) -> None:
        with time_machine.travel(start + timedelta(seconds=offset), tick=False):
            items = [notification(sub, n)] + ([notification(sub, n + 1000)] if batch else [])
            ingest.store(items)

    store_at(0, 1)
    store_at(10, 2)  # within the resolution: the number moves, the time does not
    sub.refresh_from_db()
    assert sub.last_notification_at == start
    assert sub.last_message_number == (1002 if batch else 2)
    store_at(61, 3)
    sub.refresh_from_db()
    assert sub.last_notification_at == start + timedelta(seconds=61)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "plain"])
def test_storing_works_with_and_without_prepared_statements(google_calendar, settings,
                                                             prepared):
    # Off is the documented setting behind a PgBouncer in transaction mode.
    settings.WEBHOOK_PREPARED_STATEMENTS = prepared
    sub, _ = make_subscription(google_calendar, "google")
    assert ingest.store([notification(sub, 1)]) == [True]
    assert ingest.store([notification(sub, 1)]) == [False]
    assert ingest.store([notification(sub, 2)]) == [True]
    sub.refresh_from_db()
    assert sub.last_message_number == 2
    assert WebhookNotification.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_session_that_lost_its_prepared_statement_still_stores(google_calendar):
    sub, _ = make_subscription(google_calendar, "google")
    assert ingest.store([notification(sub, 1)]) == [True]
    with connections["default"].cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what a pooler's server reset does
    assert ingest.store([notification(sub, 2)]) == [True]
    assert WebhookNotification.objects.count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ignored", [False, True], ids=["queued", "switched-off"])
def test_the_one_statement_path_stores_the_row_the_orm_stores(google_calendar, ignored):
    # A single notification goes through hand-built SQL, a batch through Model.save(): the
    # worker and the dashboard must read the same values back either way.
    sub, _ = make_subscription(google_calendar, "google")
    extra = {"headers": {"X-Goog-Resource-URI": "https://x.test/?a=1&b=é", "n": [1, None]},
             "payload": {"nested": {"pi": 1.5, "text": "’quote\"\\"}}}
    items = [ingest.NewNotification(subscription=sub, kind="change", resource_state="exists",
                                    dedup_key=f"k{i}", message_number=i, **extra)
             for i in range(3)]
    with time_machine.travel(datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC), tick=False):
        assert ingest.store(items[:2], ignored=ignored) == [True, True]  # the ORM path
        assert ingest.store(items[2:], ignored=ignored) == [True]  # the one-statement path
    rows = {row.dedup_key: row for row in WebhookNotification.objects.all()}

    def fields(row):
        return {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields
                if f.attname not in ("id", "dedup_key", "message_number")}

    assert fields(rows["k2"]) == fields(rows["k0"])
    assert rows["k2"].received_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert rows["k2"].headers == extra["headers"] and rows["k2"].payload == extra["payload"]
    assert rows["k2"].processing_status == ("ignored" if ignored else "pending")
