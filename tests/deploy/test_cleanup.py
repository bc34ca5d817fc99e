"""cleanup_webhook_data: batches, keeps what must survive, memory flat on hundreds of thousands."""

from __future__ import annotations

import io
import re
import threading
import time
import tracemalloc
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from apps.monitoring.models import (
    AlertDelivery,
    HealthSnapshot,
    Incident,
    ProviderApiCall,
)
from apps.webhooks.models import OrphanChannel, WebhookCounter, WebhookNotification
from apps.webhooks.services.cleanup import purge_webhook_data
from tests.support.factories import make_subscription

OLD_COMPLETED = 200_000
API_CALLS = 40_000
BATCH = 5_000


def _bulk_notifications(subscription_id: int, count: int, *, status: str, age: str,
                        prefix: str, interleave_recent: bool = False) -> None:
    """``count`` rows in one INSERT … SELECT (seconds, not minutes, for 100k+ rows).

    With ``interleave_recent`` every tenth row is one hour old instead, so the old rows are
    spread over the whole id range as they are in production.
    """
    recent = "CASE WHEN g %% 10 = 0 THEN now() - interval '1 hour' ELSE now() - %s::interval END" \
        if interleave_recent else "now() - %s::interval"
    with connection.cursor() as cur:
        cur.execute(
            f"""INSERT INTO webhooks_webhooknotification
                (subscription_id, provider, kind, received_at, resource_state, message_number,
                 dedup_key, headers, payload, processing_status, attempts, claimed_by, error)
                SELECT %s, 'google', 'change', {recent}, 'exists', g, %s || g,
                       '{{"X-Goog-Resource-State": "exists"}}', '{{}}', %s, 1, '', ''
                FROM generate_series(1, %s) AS g""",
            [subscription_id, age, prefix, status, count],
        )


def _bulk_api_calls(count: int, age: str) -> None:
    with connection.cursor() as cur:
        cur.execute(
            """INSERT INTO monitoring_providerapicall
               (provider, operation, status_code, duration_ms, error_kind, created_at)
               SELECT 'google', 'events.list', 200, g %% 500, '', now() - %s::interval
               FROM generate_series(1, %s) AS g""",
            [age, count],
        )


def _incident(key: str, opened_days: int, resolved_days: int | None, deliveries: int):
    now = timezone.now()
    incident = Incident.objects.create(
        key=key, level="critical", title=key, opened_at=now - timedelta(days=opened_days),
        resolved_at=None if resolved_days is None else now - timedelta(days=resolved_days),
    )
    AlertDelivery.objects.bulk_create(
        AlertDelivery(incident=incident, channel="slack", event="opened", succeeded=True,
                      created_at=now - timedelta(days=opened_days))
        for _ in range(deliveries)
    )
    return incident


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_deletes_hundreds_of_thousands_of_rows_in_batches_with_flat_memory(capsys, settings):
    settings.CLEANUP_KEEP_FAILED_DAYS = 90
    sub, _ = make_subscription()
    started = time.perf_counter()
    # 200k completed rows 40 days old, every tenth of them actually one hour old (kept).
    _bulk_notifications(sub.pk, OLD_COMPLETED, status="completed", age="40 days",
                        prefix="old:", interleave_recent=True)
    _bulk_notifications(sub.pk, 3_000, status="failed", age="40 days", prefix="failed-young:")
    _bulk_notifications(sub.pk, 2_000, status="failed", age="120 days", prefix="failed-old:")
    _bulk_notifications(sub.pk, 500, status="pending", age="60 days", prefix="pending-old:")
    _bulk_api_calls(API_CALLS, "40 days")
    _bulk_api_calls(1_000, "2 hours")
    open_incident = _incident("worker_dead", opened_days=200, resolved_days=None, deliveries=30)
    _incident("old_resolved", opened_days=200, resolved_days=150, deliveries=20)
    recent_resolved = _incident("recent_resolved", 60, resolved_days=50, deliveries=5)
    with connection.cursor() as cur:  # statistics, as autovacuum keeps them in production
        cur.execute("ANALYZE webhooks_webhooknotification, monitoring_providerapicall")
    rows = WebhookNotification.objects.count() + ProviderApiCall.objects.count()
    created = time.perf_counter() - started
    expected_old = OLD_COMPLETED - OLD_COMPLETED // 10

    out = io.StringIO()
    tracemalloc.start()
    started = time.perf_counter()
    call_command("cleanup_webhook_data", "--days=30", f"--batch-size={BATCH}", stdout=out)
    took = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    text = out.getvalue()

    # Batches: progress is printed per batch, and no batch is larger than asked.
    batch_lines = re.findall(r"notifications: batch (\d+), ([\d,]+) deleted", text)
    deleted = expected_old + 2_000
    assert len(batch_lines) == -(-deleted // BATCH)
    assert int(batch_lines[-1][1].replace(",", "")) == deleted
    assert f"notifications: deleted {deleted:,} in {len(batch_lines)} batches" in text
    # Survivors: recent, failed within CLEANUP_KEEP_FAILED_DAYS, unprocessed, open incidents.
    left = WebhookNotification.objects
    assert left.filter(dedup_key__startswith="old:").count() == OLD_COMPLETED // 10
    assert left.filter(dedup_key__startswith="failed-young:").count() == 3_000
    assert left.filter(dedup_key__startswith="failed-old:").count() == 0
    assert left.filter(dedup_key__startswith="pending-old:").count() == 500
    assert ProviderApiCall.objects.count() == 1_000
    assert set(Incident.objects.values_list("key", flat=True)) == {
        "worker_dead", "recent_resolved"}
    assert open_incident.deliveries.count() == 30
    assert recent_resolved.deliveries.count() == 5
    # Memory: one batch of ids, not the table (the ids of 200k rows alone would be ~7 MB).
    assert peak < 3 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    total = deleted + API_CALLS + 20 + 1
    with capsys.disabled():
        print(f"\n[cleanup] {rows:,} rows created in {created:.1f}s; {total:,} deleted in "
              f"{took:.1f}s = {total / took:,.0f} rows/s under tracemalloc; "
              f"peak {peak / 1e6:.2f} MB")


@pytest.mark.django_db(transaction=True)
def test_each_batch_commits_on_its_own_so_other_connections_see_progress():
    sub, _ = make_subscription()
    _bulk_notifications(sub.pk, 2_000, status="completed", age="40 days", prefix="c:")
    seen_by_others: list[int] = []

    def count_from_another_connection() -> None:
        seen_by_others.append(WebhookNotification.objects.count())
        connections.close_all()

    def progress(label: str, batch: int, deleted: int, last_pk: int) -> None:
        if label == "notifications" and batch == 1:
            reader = threading.Thread(target=count_from_another_connection)
            reader.start()
            reader.join(timeout=10)

    results = purge_webhook_data(30, batch_size=500, progress=progress)

    # While the cleanup was still running, another connection already saw the first batch
    # gone: no transaction spans the whole run, so no lock is held for its length.
    assert seen_by_others == [1_500]
    assert results[0].batches == 4
    assert WebhookNotification.objects.count() == 0


@pytest.mark.django_db
def test_a_dry_run_counts_what_a_real_run_deletes_and_deletes_nothing():
    sub, _ = make_subscription()
    _bulk_notifications(sub.pk, 700, status="completed", age="31 days", prefix="c:")
    _bulk_notifications(sub.pk, 300, status="ignored", age="45 days", prefix="i:")
    _bulk_notifications(sub.pk, 50, status="completed", age="29 days", prefix="young:")
    now = timezone.now()
    HealthSnapshot.objects.bulk_create(
        HealthSnapshot(status="healthy", created_at=now - timedelta(days=d)) for d in (1, 40, 50)
    )
    OrphanChannel.objects.create(provider="google", channel_id="gone",
                                 last_seen_at=now - timedelta(days=40))
    OrphanChannel.objects.create(provider="google", channel_id="live", last_seen_at=now)
    WebhookCounter.objects.create(bucket=now - timedelta(days=35), provider="google",
                                  kind="rejected", count=4)

    dry = io.StringIO()
    call_command("cleanup_webhook_data", "--days=30", "--dry-run", stdout=dry)
    assert "notifications: would delete 1,000" in dry.getvalue()
    assert "health snapshots: would delete 2" in dry.getvalue()
    assert WebhookNotification.objects.count() == 1_050

    real = io.StringIO()
    call_command("cleanup_webhook_data", "--days=30", stdout=real)
    assert "notifications: deleted 1,000" in real.getvalue()
    assert "orphan channels: deleted 1" in real.getvalue()
    assert "webhook counters: deleted 1" in real.getvalue()
    assert WebhookNotification.objects.count() == 50
    assert HealthSnapshot.objects.count() == 1
    assert list(OrphanChannel.objects.values_list("channel_id", flat=True)) == ["live"]


@pytest.mark.django_db
def test_failed_notifications_are_kept_for_the_longer_failed_retention(settings):
    settings.CLEANUP_KEEP_FAILED_DAYS = 60
    sub, _ = make_subscription()
    _bulk_notifications(sub.pk, 10, status="failed", age="45 days", prefix="f45:")
    _bulk_notifications(sub.pk, 10, status="failed", age="61 days", prefix="f61:")

    call_command("cleanup_webhook_data", "--days=7", stdout=io.StringIO())

    assert WebhookNotification.objects.filter(dedup_key__startswith="f45:").count() == 10
    assert WebhookNotification.objects.filter(dedup_key__startswith="f61:").count() == 0


def test_it_refuses_a_missing_or_non_positive_retention():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("cleanup_webhook_data")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("cleanup_webhook_data", "--days=0")
