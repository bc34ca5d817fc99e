"""The status rules table, each condition built from real rows."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.monitoring.services.health_document import get_system_health
from tests.support.factories import beat, make_calendar, make_notifications, make_subscriptions
from tests.support.outages import GONE, database_unreachable, printed_without_database

pytestmark = pytest.mark.django_db


def keys(health: dict) -> dict[str, str]:
    return {a["key"]: a["level"] for a in health["alerts"]}


def test_an_empty_system_with_a_live_worker_is_healthy_with_sensible_figures(live_worker):
    health = get_system_health()
    assert health["status"] == "healthy"
    assert health["alerts"] == []
    subs = health["metrics"]["subscriptions"]
    notes = health["metrics"]["notifications"]
    api = health["metrics"]["api_performance"]
    assert subs["total_subscriptions"] == 0 and subs["health_percentage"] == 100.0
    assert notes["success_rate_percentage"] == 100.0
    assert notes["average_processing_time_ms"] is None
    assert notes["oldest_pending_age_seconds"] is None
    assert api["api_calls_last_hour"] == 0 and api["average_api_response_time_ms"] is None
    assert api["api_quota_usage_percentage"] == 0.0
    infra = health["metrics"]["infrastructure"]
    assert infra["database_healthy"] and infra["cache_healthy"]
    assert infra["workers_alive"] == 1
    json.dumps(health)  # the document is JSON as it is


def test_the_whole_check_costs_a_handful_of_queries(live_worker, calendar,
                                                    django_assert_max_num_queries):
    subs = make_subscriptions(calendar, 3)
    make_notifications(subs[0], 5)
    # The figures' aggregates, the kill switch row, the job runs, the SLO windows' rows.
    with django_assert_max_num_queries(14):
        get_system_health()


@pytest.mark.parametrize(("active", "expired", "status"), [
    (19, 1, "healthy"),    # 95 %
    (16, 1, "degraded"),   # 94.1 %
    (4, 1, "degraded"),    # 80 %
    (15, 4, "critical"),   # 78.9 %
])
def test_subscription_health_decides_the_status(live_worker, calendar, active, expired, status):
    make_subscriptions(calendar, active)
    make_subscriptions(calendar, expired, status="expired")
    health = get_system_health()
    assert health["status"] == status
    level = {"healthy": None, "degraded": "warning", "critical": "critical"}[status]
    assert keys(health).get("subscription_health") == level


def test_a_subscription_still_being_created_does_not_count_against_health(live_worker,
                                                                          calendar):
    make_subscriptions(calendar, 1)
    make_subscriptions(calendar, 1, status="pending", expires_at=None)
    pending = calendar.webhook_subscriptions.get(status="pending")
    pending.created_at = timezone.now() - timedelta(minutes=1)
    pending.save()
    assert get_system_health()["metrics"]["subscriptions"]["health_percentage"] == 100.0


@pytest.mark.parametrize(("ok", "failed", "status"), [
    (199, 1, "healthy"),    # burn 0.5: within the 99 % freshness objective
    (97, 3, "degraded"),    # burn 3: the 3 d / 6 h warning only
    (90, 10, "critical"),   # burn 10: the 6 h / 30 min page
])
def test_failing_notifications_burn_the_freshness_budget(live_worker, calendar, ok, failed,
                                                         status):
    sub = make_subscriptions(calendar, 1)[0]
    make_notifications(sub, ok)
    make_notifications(sub, failed, status="failed")
    health = get_system_health()
    assert health["metrics"]["notifications"]["success_rate_percentage"] == round(
        ok * 100 / (ok + failed), 1)
    assert health["status"] == status
    level = {"healthy": None, "degraded": "warning", "critical": "critical"}[status]
    assert keys(health).get("slo_freshness") == level


def test_a_quiet_hour_is_judged_on_the_whole_day(live_worker, calendar):
    sub = make_subscriptions(calendar, 1)[0]
    make_notifications(sub, 40, received_at=timezone.now() - timedelta(hours=5))
    make_notifications(sub, 1, status="failed")  # the only one in the last hour
    notes = get_system_health()["metrics"]["notifications"]
    assert notes["success_rate_window_seconds"] == 24 * 3600
    assert notes["success_rate_percentage"] == round(100 * 40 / 41, 1)


@pytest.mark.parametrize(("old", "status"), [
    (5, "healthy"), (6, "degraded"), (20, "degraded"), (21, "critical"),
])
def test_notifications_waiting_over_five_minutes_decide_the_status(live_worker, calendar, old,
                                                                   status):
    sub = make_subscriptions(calendar, 1)[0]
    make_notifications(sub, old, status="pending",
                       received_at=timezone.now() - timedelta(minutes=6))
    make_notifications(sub, 30, status="pending")  # just arrived: not old
    health = get_system_health()
    notes = health["metrics"]["notifications"]
    assert notes["old_pending_notifications"] == old
    assert notes["pending_notifications"] == old + 30
    assert 360 <= notes["oldest_pending_age_seconds"] < 370
    assert health["status"] == status


@pytest.mark.parametrize(("failed", "active", "status"), [
    (5, 95, "healthy"), (6, 114, "degraded"), (10, 190, "degraded"), (11, 209, "critical"),
])
def test_failed_subscriptions_decide_the_status(live_worker, calendar, failed, active, status):
    # Enough active ones that subscription health stays >= 95 %: only the count decides.
    make_subscriptions(calendar, active)
    make_subscriptions(calendar, failed, status="failed")
    health = get_system_health()
    assert health["metrics"]["subscriptions"]["health_percentage"] >= 95
    assert health["metrics"]["subscriptions"]["failed_subscriptions"] == failed
    assert health["status"] == status


def test_a_cache_that_does_not_answer_degrades_the_service(live_worker, settings):
    settings.CACHES = {"default": {
        "BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2}}}
    health = get_system_health()
    assert health["metrics"]["infrastructure"]["cache_healthy"] is False
    assert health["status"] == "degraded"
    assert keys(health) == {"cache_down": "warning"}


def test_an_unreachable_database_is_critical_and_does_not_raise(live_worker):
    with database_unreachable():
        health = get_system_health()
    assert health["status"] == "critical"
    assert health["metrics"]["infrastructure"]["database_healthy"] is False
    assert health["metrics"]["subscriptions"] == {}
    assert keys(health)["database_down"] == "critical"


def test_a_database_server_that_is_gone_gives_a_critical_document():
    health, printed = printed_without_database(
        "from apps.monitoring.services.health_document import get_system_health; "
        "print(json.dumps(get_system_health()))")
    assert health["status"] == "critical"
    assert [a["key"] for a in health["alerts"]] == ["database_down"]
    assert GONE not in printed


def test_a_dead_worker_is_critical_when_notifications_wait(calendar):
    beat(at=timezone.now() - timedelta(minutes=4))
    sub = make_subscriptions(calendar, 1)[0]
    make_notifications(sub, 1, status="pending")
    health = get_system_health()
    assert health["metrics"]["infrastructure"]["worker_heartbeat_age_seconds"] >= 240
    assert health["status"] == "critical"
    assert keys(health) == {"worker_stale": "critical"}


def test_a_dead_worker_with_nothing_waiting_is_a_warning_only(calendar):
    beat(at=timezone.now() - timedelta(minutes=4))
    health = get_system_health()
    assert health["status"] == "healthy"
    assert keys(health) == {"worker_stale": "warning"}


def test_a_stopped_worker_does_not_count_as_alive(calendar):
    row = beat()
    row.stopped_at = timezone.now()
    row.save()
    assert get_system_health()["metrics"]["infrastructure"]["workers_alive"] == 0


def test_accounts_needing_reauthorization_warn_without_changing_the_status(live_worker):
    make_calendar(account_status="reauth_required")
    health = get_system_health()
    assert health["metrics"]["calendars"]["accounts_reauth_required"] == 1
    assert health["status"] == "healthy"
    assert keys(health) == {"accounts_reauth_required": "warning"}


def test_api_figures_come_from_recorded_provider_calls(live_worker, settings):
    from apps.monitoring.models import ProviderApiCall

    settings.PROVIDER_HOURLY_QUOTA = {"google": 100, "microsoft": 1000}
    rows = [("google", 200, 100, ""), ("google", 500, 300, "transient"),
            ("google", 404, 50, "not_found"), ("microsoft", 200, 150, "")]
    for provider, code, ms, kind in rows:
        ProviderApiCall.objects.create(provider=provider, operation="events.list",
                                       status_code=code, duration_ms=ms, error_kind=kind)
    ProviderApiCall.objects.create(provider="google", operation="events.list", duration_ms=9,
                                   created_at=timezone.now() - timedelta(hours=2))
    api = get_system_health()["metrics"]["api_performance"]
    assert api["api_calls_last_hour"] == 4
    assert api["api_errors_last_hour"] == 1  # a 404 for a deleted event is not an error
    assert api["average_api_response_time_ms"] == 150.0
    assert api["api_quota_usage_percentage"] == 3.0  # google: 3 of 100 per hour


def test_many_provider_errors_raise_a_warning(live_worker, settings):
    from apps.monitoring.models import ProviderApiCall

    settings.HEALTH_THRESHOLDS = {**settings.HEALTH_THRESHOLDS, "api_error_min_calls": 4}
    for kind in ("", "transient", "rate_limited", "network"):
        ProviderApiCall.objects.create(provider="microsoft", operation="delta", error_kind=kind)
    health = get_system_health()
    assert keys(health) == {"provider_api_errors": "warning"}
    assert health["status"] == "healthy"


def test_rejected_requests_and_stale_calendars_are_reported(live_worker, settings):
    from apps.webhooks.models import WebhookCounter

    now = timezone.now()
    WebhookCounter.objects.create(bucket=now.replace(minute=0, second=0, microsecond=0),
                                  provider="google", kind="rejected", count=7)
    WebhookCounter.objects.create(bucket=now - timedelta(days=3), provider="google",
                                  kind="rejected", count=100)
    make_calendar(last_synced_at=now - timedelta(seconds=settings.POLL_STALENESS_SECONDS + 60))
    make_calendar(last_synced_at=now)
    health = get_system_health()
    assert health["metrics"]["notifications"]["rejected_notifications_24h"] == 7
    assert health["metrics"]["calendars"]["calendars_behind_staleness_limit"] == 1
    assert any("POLL_STALENESS_SECONDS" in r for r in health["recommendations"])


def test_a_host_whose_worker_died_is_alerted_until_a_worker_runs_there_again(calendar):
    from apps.webhooks.models import WorkerHeartbeat

    now = timezone.now()
    for worker_id, seen in (("host-a:1:aa", now), ("host-b:2:bb", now - timedelta(minutes=10))):
        beat(worker_id, at=seen)  # host-b's worker was killed: no clean stop
        WorkerHeartbeat.objects.filter(worker_id=worker_id).update(
            hostname=worker_id.split(":")[0])
    health = get_system_health()
    assert keys(health).get("worker_host_lost") == "warning"
    assert health["status"] == "healthy"  # host-a carries the load
    assert "host-b" in next(a["title"] for a in health["alerts"]
                            if a["key"] == "worker_host_lost")
    beat("host-b:3:cc", at=now)  # restarted there
    WorkerHeartbeat.objects.filter(worker_id="host-b:3:cc").update(hostname="host-b")
    assert "worker_host_lost" not in keys(get_system_health())
