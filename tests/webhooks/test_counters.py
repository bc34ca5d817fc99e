"""Counters of what was not stored (additive per hour, exact under concurrency, best effort)
and orphan channels (upserted, hits + 1)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from apps.webhooks.models import OrphanChannel, WebhookCounter
from apps.webhooks.services.receiving import counters
from apps.webhooks.services.ttl_cache import reset_all
from tests.support.concurrency import run_together


@pytest.mark.django_db
def test_counters_add_up_per_hour(settings):
    with time_machine.travel(datetime(2030, 1, 1, 10, 15, tzinfo=UTC), tick=False):
        counters.count_event("google", "rejected")
        counters.count_event("google", "rejected", 4)
        counters.count_event("microsoft", "rejected")
    with time_machine.travel(datetime(2030, 1, 1, 11, 0, 1, tzinfo=UTC), tick=False):
        counters.count_event("google", "rejected", 2)
    rows = {(r.bucket.hour, r.provider, r.kind): r.count for r in WebhookCounter.objects.all()}
    assert rows == {(10, "google", "rejected"): 5, (10, "microsoft", "rejected"): 1,
                    (11, "google", "rejected"): 2}


@pytest.mark.django_db(transaction=True)
def test_concurrent_counter_increments_are_never_lost():
    run_together(8, lambda i: [counters.count_event("google", "orphan") for _ in range(10)])
    assert WebhookCounter.objects.get(provider="google", kind="orphan").count == 80


@pytest.mark.django_db
def test_an_orphan_is_upserted_and_keeps_a_resource_id_it_learnt():
    counters.record_orphan("google", "chan-1", "res-1", "https://example/uri")
    counters.record_orphan("google", "chan-1", "", "")
    counters.record_orphan("microsoft", "chan-1")
    orphan = OrphanChannel.objects.get(provider="google", channel_id="chan-1")
    assert (orphan.hits, orphan.resource_id, orphan.resource_uri) == (2, "res-1",
                                                                      "https://example/uri")
    assert orphan.last_seen_at >= orphan.first_seen_at
    assert OrphanChannel.objects.filter(provider="microsoft").count() == 1


@pytest.mark.django_db
def test_a_counter_that_cannot_be_written_never_raises(monkeypatch):
    from django.db import OperationalError

    def broken(*args, **kwargs):
        raise OperationalError("gone")

    monkeypatch.setattr(counters.connection, "cursor", broken)
    counters.count_event("google", "rejected")  # no exception
    monkeypatch.undo()
    counters.count_event("google", "rejected")  # paused: the database was just seen failing
    assert not WebhookCounter.objects.exists()
    reset_all()  # the pause is over
    counters.count_event("google", "rejected")
    assert WebhookCounter.objects.get().count == 1
