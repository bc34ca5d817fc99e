"""The rollups themselves: the hourly status history, pruning, the slowest calendars, and the
rebuild from recorded notifications (a database that predates the rollups)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from apps.monitoring.models import CalendarHourRollup, SliRollup, StatusHour
from apps.monitoring.services import dashboard, rollups
from apps.webhooks.models import WebhookNotification
from calendar_sync import sli
from tests.support.factories import beat, make_calendar, make_notifications, make_subscriptions

pytestmark = pytest.mark.django_db
T0 = datetime(2025, 3, 10, 12, 30, tzinfo=UTC)


def test_each_hour_keeps_its_worst_status_and_its_checks():
    for minute, status in ((0, "healthy"), (5, "critical"), (10, "degraded"), (15, "healthy")):
        rollups.record_status(status, T0 + timedelta(minutes=minute))
    hour = StatusHour.objects.get()
    assert hour.worst_status == "critical"
    assert (hour.healthy_checks, hour.degraded_checks, hour.critical_checks) == (2, 1, 1)
    history = rollups.status_history(T0)
    assert len(history) == 7 * 24 and history[-1]["status"] == "critical"
    assert history[-2] == {"hour": T0.replace(minute=0) - timedelta(hours=1), "status": None,
                           "checks": 0}


def test_pruning_keeps_what_some_window_reads_and_every_running_total():
    calendar = make_calendar()
    for age in (timedelta(hours=1), timedelta(hours=8), timedelta(days=30)):
        sli.record("google", T0 - age, requests_ok=1)
        sli.record_calendar(calendar.pk, "google", 1, 100, T0 - age)
    rollups.prune(T0)
    minutes = SliRollup.objects.filter(resolution="minute").values_list("bucket", flat=True)
    assert list(minutes) == [sli.minute_of(T0 - timedelta(hours=1))]
    assert SliRollup.objects.filter(resolution="hour").count() == 2  # 30 days old is gone
    assert SliRollup.objects.get(resolution="total").requests_ok == 3
    assert CalendarHourRollup.objects.count() == 2  # the slowest calendars read 24 h


def test_the_slowest_calendars_are_those_with_the_slowest_hours():
    quick, slow = make_calendar(name="Quick"), make_calendar(name="Slow")
    with time_machine.travel(T0, tick=False):
        sli.record_calendar(quick.pk, "google", 10, 50, T0 - timedelta(hours=2))
        sli.record_calendar(slow.pk, "google", 2, 900, T0 - timedelta(hours=5))
        sli.record_calendar(slow.pk, "google", 2, 100, T0 - timedelta(hours=5))
        sli.record_calendar(slow.pk, "google", 1, 4000, T0 - timedelta(hours=30))  # too old
        rows = rollups.slowest_calendars()
    assert [(r["calendar"], r["average_processing_time_ms"], r["max_processing_time_ms"],
             r["notifications"]) for r in rows] == [("Slow", 500.0, 900, 4),
                                                   ("Quick", 50.0, 50, 10)]


def test_a_database_older_than_the_rollups_gets_them_rebuilt_from_its_notifications():
    subscription = make_subscriptions(make_calendar(), 1)[0]
    received = T0 - timedelta(hours=3)
    WebhookNotification.objects.bulk_create([
        WebhookNotification(subscription=subscription, provider="google",
                            received_at=received, dedup_key=uuid.uuid4().hex,
                            processing_status=status, processing_time_ms=80,
                            processed_at=received + timedelta(seconds=lag))
        for status, lag in [("completed", 5)] * 7 + [("completed", 300), ("failed", 5)]])
    rollups.backfill(hours=24, now=T0)
    with time_machine.travel(T0, tick=False):
        trends = dashboard.performance_trends()
    slot = trends["hours"].index(received.replace(minute=0).isoformat())
    assert trends["notifications"][slot] == 9
    assert trends["success_rate"][slot] == round(100 * 8 / 9, 1)
    hour = SliRollup.objects.get(resolution="hour")
    assert (hour.changes, hour.changes_fresh) == (9, 7)  # one late, one never visible
    assert CalendarHourRollup.objects.get().notifications == 9


def test_the_health_and_dashboard_queries_do_not_grow_with_the_traffic(client, staff_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(staff_user)
    beat()
    subscriptions = [make_subscriptions(make_calendar(), 1)[0] for _ in range(12)]
    make_notifications(subscriptions[0], 1)

    def queries() -> list[int]:
        counts = []
        for url in ("/webhooks/monitoring/health/", "/webhooks/monitoring/dashboard/",
                    "/webhooks/monitoring/", "/metrics"):
            with CaptureQueriesContext(connection) as captured:
                assert client.get(url).status_code == 200
            counts.append(len(captured.captured_queries))
        return counts

    quiet = queries()
    for hours_ago, subscription in enumerate(subscriptions):
        received = datetime.now(UTC) - timedelta(hours=hours_ago, minutes=5)
        make_notifications(subscription, 30, received_at=received)
        make_notifications(subscription, 2, status="failed", received_at=received)
    assert queries() == quiet
