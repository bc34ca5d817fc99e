"""The storing service behind the receivers: dedup, forward-only subscription progress,
additive hourly counters and orphan upserts — exact under concurrency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.webhooks.models import WebhookNotification, WebhookSubscription
from apps.webhooks.services.receiving import ingest
from apps.webhooks.services.subscriptions.subscription_cache import StaleSubscription
from apps.webhooks.services.ttl_cache import reset_all
from tests.support.concurrency import run_together
from tests.support.factories import make_subscription


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
    # On PostgreSQL storing is hand-built SQL, on SQLite Model.save(): the worker and the
    # dashboard must read the same values back either way.
    sub, _ = make_subscription(google_calendar, "google")
    extra = {"headers": {"X-Goog-Resource-URI": "https://x.test/?a=1&b=é", "n": [1, None]},
             "payload": {"nested": {"pi": 1.5, "text": "’quote\"\\"}}}
    items = [ingest.NewNotification(subscription=sub, kind="change", resource_state="exists",
                                    dedup_key=f"k{i}", message_number=i, **extra)
             for i in range(4)]
    with time_machine.travel(datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC), tick=False):
        # The ORM path (SQLite), the batch statement, the single-notification statement.
        assert ingest.store_each(items[:1], timezone.now(), ignored) == [True]
        assert ingest.store(items[1:3], ignored=ignored) == [True, True]
        assert ingest.store(items[3:], ignored=ignored) == [True]
    rows = {row.dedup_key: row for row in WebhookNotification.objects.all()}

    def fields(row):
        return {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields
                if f.attname not in ("id", "dedup_key", "message_number")}

    for key in ("k1", "k3"):
        assert fields(rows[key]) == fields(rows["k0"])
        assert rows[key].received_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
        assert rows[key].headers == extra["headers"] and rows[key].payload == extra["payload"]
        assert rows[key].processing_status == ("ignored" if ignored else "pending")


def batch_of(subscriptions, numbers) -> list[ingest.NewNotification]:
    return [notification(sub, n) for n in numbers for sub in subscriptions]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "plain"])
def test_a_batch_is_one_round_trip_whatever_its_size(google_calendar, settings, prepared):
    settings.WEBHOOK_PREPARED_STATEMENTS = prepared
    subs = [make_subscription(google_calendar, "microsoft")[0] for _ in range(3)]
    reset_all()  # each store below wakes the worker: one statement shape
    ingest.store(batch_of(subs, [1, 2]))  # the session prepares the statement once
    round_trips = []
    for numbers in ([3], range(4, 54)):
        reset_all()
        with CaptureQueriesContext(connection) as queries:
            assert all(ingest.store(batch_of(subs, numbers)))
        round_trips.append(len(queries))
    assert round_trips == [1, 1]
    assert WebhookNotification.objects.count() == 3 * 53
    for sub in WebhookSubscription.objects.filter(pk__in=[s.pk for s in subs]):
        assert sub.last_message_number == 53 and sub.last_notification_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_batch_with_a_subscription_that_changed_meanwhile_asks_for_a_redo(google_calendar):
    fine, _ = make_subscription(google_calendar, "microsoft")
    changed, _ = make_subscription(google_calendar, "microsoft")
    WebhookSubscription.objects.filter(pk=changed.pk).update(status="stopped")
    with pytest.raises(StaleSubscription):  # the receiver redoes it from the database
        ingest.store(batch_of([fine, changed], [1, 2]))
    # What still matched is kept whatever the redo finds.
    assert set(WebhookNotification.objects.values_list("subscription", flat=True)) == {fine.pk}
    assert ingest.store(batch_of([fine], [1, 2, 3])) == [False, False, True]


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_over_the_same_subscriptions_store_everything_once(
        google_calendar):
    subs = [make_subscription(google_calendar, "microsoft")[0] for _ in range(4)]
    results = []
    # Each batch names the subscriptions in another order, and overlaps the others' keys.
    run_together(8, lambda i: results.extend(
        ingest.store(batch_of(subs[i % 4:] + subs[:i % 4], range(i, i + 10)))))
    assert sum(results) == WebhookNotification.objects.count() == 4 * 17
    assert {s.last_message_number for s in WebhookSubscription.objects.all()} == {16}
