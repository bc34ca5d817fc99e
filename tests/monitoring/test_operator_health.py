"""Health sees the worst states: suspended subscriptions, a forgotten kill switch, rollout
settings that contradict each other; the dashboard keeps the first document's series names."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from apps.calendars.models import Calendar
from apps.monitoring.services.dashboard import performance_trends
from apps.monitoring.services.health_document import get_system_health
from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.flags import set_runtime_switch
from calendar_sync import health_schedule
from tests.support.factories import make_calendar, make_subscriptions

pytestmark = pytest.mark.django_db


def alert_keys(health: dict) -> dict[str, str]:
    return {a["key"]: a["level"] for a in health["alerts"]}


def test_suspended_subscriptions_among_many_working_ones_are_not_healthy(live_worker):
    calendar = make_calendar()
    make_subscriptions(calendar, 300)
    make_subscriptions(calendar, 12, status="suspended", failure_count=10)
    health = get_system_health()
    subs = health["metrics"]["subscriptions"]
    assert subs["failed_subscriptions"] == 12
    assert "suspended" in subs["failed_subscriptions_counts"]
    assert health["status"] == "critical"
    failed = next(a for a in health["alerts"] if a["key"] == "failed_subscriptions")
    assert "12 suspended" in failed["message"]


def test_an_active_subscription_with_repeated_failures_counts_as_failing(live_worker):
    calendar = make_calendar()
    make_subscriptions(calendar, 6, failure_count=5)
    make_subscriptions(calendar, 4, status="stopped", failure_count=9)
    health = get_system_health()
    assert health["metrics"]["subscriptions"]["failed_subscriptions"] == 6
    assert alert_keys(health)["failed_subscriptions"] == "warning"


def test_a_kill_switch_left_off_degrades_the_status_and_says_who(live_worker):
    set_runtime_switch(False, by="cli:alice")
    health = get_system_health()
    assert health["status"] == "degraded"
    alert = next(a for a in health["alerts"] if a["key"] == "kill_switch_off")
    assert "cli:alice" in alert["message"]
    assert health["metrics"]["rollout"]["kill_switch"] == "off"
    assert any("webhooks_switch on" in r for r in health["recommendations"])


def test_a_phase_overridden_by_webhooks_enabled_false_is_a_warning(live_worker, settings):
    settings.WEBHOOK_DEPLOYMENT_PHASE = 3
    settings.WEBHOOKS_ENABLED = False
    health = get_system_health()
    assert alert_keys(health)["rollout_phase_mismatch"] == "warning"
    assert health["status"] == "degraded"
    assert health["metrics"]["rollout"]["push_enabled"] is False


def test_phase_two_without_early_adopters_warns(live_worker, settings):
    settings.WEBHOOK_DEPLOYMENT_PHASE = 2
    settings.WEBHOOK_EARLY_ADOPTERS = []
    health = get_system_health()
    alert = next(a for a in health["alerts"] if a["key"] == "rollout_phase_mismatch")
    assert "early adopters" in alert["title"].lower()


def test_the_first_dashboard_series_names_are_kept_with_24_hourly_points():
    trends = performance_trends()
    for name in ("success_rate_24h", "processing_time_24h", "subscription_count_24h"):
        assert len(trends[name]) == 24


def test_switch_status_shows_the_phase_and_which_setting_wins(settings):
    settings.WEBHOOK_DEPLOYMENT_PHASE = 3
    settings.WEBHOOKS_ENABLED = False
    out = StringIO()
    call_command("webhooks_switch", "status", stdout=out)
    assert "webhooks OFF" in out.getvalue()
    assert "rollout: phase 3" in out.getvalue()
    assert "WEBHOOKS_ENABLED=false overrides phase 3" in out.getvalue()


def test_a_plain_check_changes_nothing_but_reports(live_worker):
    calendar = make_calendar()
    make_subscriptions(calendar, 11, status="failed", failure_count=12)
    out = StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("webhook_health_check", stdout=out)
    assert exit_.value.code == 2
    assert "observed only" in out.getvalue()
    assert not WebhookSubscription.objects.filter(status="suspended").exists()
    assert not Calendar.objects.filter(fallback_polling_enabled=True).exists()
    assert health_schedule.state()["last_run_at"] is None  # cron's next check is not postponed


def test_a_check_that_cannot_run_exits_3_without_the_error_text(monkeypatch, caplog):
    secret = "https://hooks.slack.example/services/T000/B000/XXXXsecretXXXX"

    def broken() -> dict:
        raise RuntimeError(f"could not reach {secret}")

    monkeypatch.setattr("apps.monitoring.services.health_cycle.get_system_health", broken)
    err = StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("webhook_health_check", stderr=err)
    assert exit_.value.code == 3
    assert "RuntimeError" in err.getvalue() and "--traceback" in err.getvalue()
    assert "secret" not in err.getvalue() and "secret" not in caplog.text
