"""The staff views: who may see them, the JSON documents, the hourly series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from apps.monitoring.models import HealthSnapshot, Incident
from tests.support.factories import (
    beat,
    make_api_call,
    make_calendar,
    make_notifications,
    make_subscriptions,
)

pytestmark = pytest.mark.django_db
URLS = ["/webhooks/monitoring/", "/webhooks/monitoring/health/",
        "/webhooks/monitoring/dashboard/"]
NOW = datetime(2025, 3, 3, 12, 30, tzinfo=UTC)


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.mark.parametrize("url", URLS)
def test_anonymous_users_are_sent_to_the_admin_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={url}"


@pytest.mark.parametrize("url", URLS)
def test_signed_in_users_who_are_not_staff_are_refused(client, user, url):
    client.force_login(user)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", URLS)
def test_staff_see_them(staff_client, url):
    response = staff_client.get(url)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


def test_the_health_document_has_the_seed_shape(staff_client, live_worker):
    body = staff_client.get("/webhooks/monitoring/health/").json()
    assert set(body) == {"timestamp", "status", "metrics", "alerts", "recommendations", "slo"}
    m = body["metrics"]
    for section, names in {
        "subscriptions": ["total_subscriptions", "active_subscriptions", "expiring_soon",
                          "failed_subscriptions", "inactive_subscriptions",
                          "health_percentage"],
        "notifications": ["total_notifications_24h", "success_rate_percentage",
                          "failed_notifications_24h", "pending_notifications",
                          "old_pending_notifications", "average_processing_time_ms"],
        "api_performance": ["api_calls_last_hour", "api_errors_last_hour",
                            "average_api_response_time_ms", "api_quota_usage_percentage"],
        "infrastructure": ["database_healthy", "cache_healthy", "disk_space_ok",
                           "memory_usage_ok", "worker_heartbeat_age_seconds"],
    }.items():
        assert set(names) <= set(m[section]), section


def build_a_day(calendar) -> None:
    """Notifications, provider calls and snapshots at known hours before NOW."""
    sub = make_subscriptions(calendar, 1)[0]
    three_hours_ago = NOW - timedelta(hours=3)
    make_notifications(sub, 8, received_at=three_hours_ago, processing_time_ms=100)
    make_notifications(sub, 2, status="failed", received_at=three_hours_ago)
    make_notifications(sub, 4, received_at=NOW - timedelta(minutes=10), processing_time_ms=20)
    make_notifications(sub, 3, received_at=NOW - timedelta(hours=30))  # outside the day
    for kind in ("", "", "transient"):
        make_api_call(NOW - timedelta(hours=1, minutes=5), error_kind=kind)
    for hours_ago, minutes_ago, active in ((5, 20, 7), (5, 1, 8), (2, 1, 9)):
        HealthSnapshot.objects.create(
            status="healthy", active_subscriptions=active, total_subscriptions=10,
            created_at=NOW - timedelta(hours=hours_ago, minutes=minutes_ago))


def test_the_dashboard_series_are_real_hourly_figures(staff_client, calendar):
    build_a_day(calendar)
    with time_machine.travel(NOW, tick=False):
        beat()
        body = staff_client.get("/webhooks/monitoring/dashboard/").json()
    assert set(body) == {"health", "recent_activity", "performance_trends",
                         "subscription_distribution", "status_history"}
    trends = body["performance_trends"]
    assert len(trends["hours"]) == 24
    assert trends["hours"][-1] == "2025-03-03T12:00:00+00:00"
    at = {hour: i for i, hour in enumerate(trends["hours"])}
    nine, eleven, noon = (at[f"2025-03-03T{h}:00:00+00:00"] for h in ("09", "11", "12"))
    assert trends["notifications"][nine] == 10 and trends["notifications"][noon] == 4
    assert trends["success_rate"][nine] == 80.0 and trends["success_rate"][noon] == 100.0
    assert trends["average_processing_time_ms"][nine] == 100.0
    assert trends["success_rate"][nine + 1] is None  # no data is a gap, not a zero rate
    assert sum(trends["notifications"]) == 14
    assert trends["api_calls"][eleven] == 3 and trends["api_errors"][eleven] == 1
    seven = at["2025-03-03T07:00:00+00:00"]
    assert trends["active_subscriptions"][seven] == 8  # the hour's last snapshot
    assert trends["active_subscriptions"][at["2025-03-03T10:00:00+00:00"]] == 9


def test_recent_activity_and_distribution(staff_client, calendar):
    subs = make_subscriptions(calendar, 2)
    make_subscriptions(make_calendar("microsoft"), 1, status="failed")
    make_notifications(subs[0], 3)
    Incident.objects.create(key="cache_down", level="warning", title="Cache unreachable")
    body = staff_client.get("/webhooks/monitoring/dashboard/").json()
    distribution = body["subscription_distribution"]
    assert distribution["by_provider"] == {"google": 2, "microsoft": 1}
    assert distribution["by_status"]["active"] == 2 and distribution["by_status"]["failed"] == 1
    assert distribution["by_provider_and_status"]["microsoft"]["failed"] == 1
    activity = body["recent_activity"]
    assert activity["notifications_last_hour"]["total"] == 3
    assert activity["recent_notifications"][0]["calendar"] == calendar.name
    assert activity["recent_incidents"][0]["key"] == "cache_down"


def test_no_secret_from_a_notification_reaches_the_dashboard(staff_client, calendar):
    make_notifications(make_subscriptions(calendar, 1)[0], 1)
    for url in ("/webhooks/monitoring/dashboard/", "/webhooks/monitoring/"):
        assert b"secret-channel-token" not in staff_client.get(url).content


def test_the_page_shows_status_incidents_charts_and_lists(staff_client, calendar, settings):
    build_a_day(calendar)
    soon = make_calendar(name="Board meetings")
    make_subscriptions(soon, 1, expires_at=NOW + timedelta(hours=3))
    with time_machine.travel(NOW, tick=False):
        beat()
        Incident.objects.create(key="failed_subscriptions", level="critical",
                                title="12 failed subscriptions")
        response = staff_client.get("/webhooks/monitoring/")
    html = response.content.decode()
    assert response["Content-Security-Policy"].startswith("default-src 'none'")
    assert '<meta http-equiv="refresh" content="60">' in html
    assert "12 failed subscriptions" in html
    assert 'data-series="success_rate" data-points="2"' in html
    assert 'data-series="notifications" data-points="24"' in html
    assert "Board meetings" in html  # expiring within a day
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
