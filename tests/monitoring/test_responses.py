"""Each automatic response, asserted on the database afterwards."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.calendars.models import Calendar
from apps.monitoring.models import AutoFallback
from apps.monitoring.services.health_document import get_system_health
from apps.monitoring.services.responses import respond
from apps.webhooks.models import WebhookSubscription
from calendar_sync import health_schedule
from tests.support.factories import make_calendar, make_subscriptions
from tests.support.outages import database_unreachable

pytestmark = pytest.mark.django_db


def status_doc(status: str) -> dict:
    return {"status": status, "metrics": {"infrastructure": {"database_healthy": True}}}


def fallback(calendar: Calendar) -> bool:
    calendar.refresh_from_db()
    return calendar.fallback_polling_enabled


def auto(calendar: Calendar) -> bool:
    return AutoFallback.objects.filter(calendar=calendar).exists()


def test_critical_polls_every_calendar_and_suspends_subscriptions_that_keep_failing(
        live_worker, settings):
    settings.WEBHOOK_MAX_SUBSCRIPTION_FAILURES = 10
    failing = make_calendar()
    make_subscriptions(failing, 11, status="failed", failure_count=10)
    working = make_calendar()
    make_subscriptions(working, 1, failure_count=9)
    by_hand = make_calendar(fallback_polling_enabled=True)
    disabled = make_calendar(sync_enabled=False)
    health = get_system_health()
    assert health["status"] == "critical"

    result = respond(health)

    assert WebhookSubscription.objects.filter(calendar=failing, status="suspended").count() == 11
    assert working.webhook_subscriptions.get().status == "active"  # 9 failures: kept
    assert fallback(failing) and fallback(working) and fallback(by_hand)
    assert not fallback(disabled)
    # Only what the monitor switched on is remembered as its own.
    assert auto(failing) and auto(working) and not auto(by_hand)
    assert (health_schedule.state()["interval_seconds"]
            == settings.HEALTH_DEGRADED_CHECK_INTERVAL_SECONDS)
    assert any("suspended 11 subscriptions" in line for line in result.actions)


def test_critical_twice_changes_nothing_the_second_time(live_worker):
    calendar = make_calendar()
    respond(status_doc("critical"))
    second = respond(status_doc("critical"))
    assert second.actions == []
    assert AutoFallback.objects.filter(calendar=calendar).count() == 1


def test_degraded_runs_maintenance_checks_faster_and_polls_failing_calendars(sandbox,
                                                                           settings):
    failing = make_calendar()
    make_subscriptions(failing, 1, status="failed", failure_count=2,
                       next_retry_at=timezone.now() + timedelta(hours=1))
    working = make_calendar()
    make_subscriptions(working, 1)
    replaced = make_calendar()  # an old expired channel, and a working one
    make_subscriptions(replaced, 1, status="expired",
                       expires_at=timezone.now() - timedelta(days=1))
    make_subscriptions(replaced, 1)

    result = respond(status_doc("degraded"))

    assert fallback(failing) and auto(failing)
    assert not fallback(working) and not fallback(replaced)
    assert (health_schedule.state()["interval_seconds"]
            == settings.HEALTH_DEGRADED_CHECK_INTERVAL_SECONDS)
    assert any(line.startswith("ran subscription maintenance") for line in result.actions)


def test_healthy_turns_off_only_the_fallbacks_it_turned_on_for_recovered_calendars(settings):
    health_schedule.set_interval(settings.HEALTH_DEGRADED_CHECK_INTERVAL_SECONDS)
    recovered = make_calendar()
    make_subscriptions(recovered, 1)
    still_failing = make_calendar()
    make_subscriptions(still_failing, 1, status="suspended")
    without_push = make_calendar()
    by_hand = make_calendar(fallback_polling_enabled=True)
    make_subscriptions(by_hand, 1)
    for calendar in (recovered, still_failing, without_push):
        calendar.fallback_polling_enabled = True
        calendar.save()
        AutoFallback.objects.create(calendar=calendar, reason="critical")

    result = respond(status_doc("healthy"))

    assert not fallback(recovered) and not auto(recovered)
    assert not fallback(without_push) and not auto(without_push)
    assert fallback(still_failing) and auto(still_failing)
    assert fallback(by_hand)  # an operator's choice is never undone
    assert health_schedule.state()["interval_seconds"] == settings.HEALTH_CHECK_INTERVAL_SECONDS
    assert "turned off again for 2 recovered calendars" in " ".join(result.actions)


def test_a_fallback_the_operator_took_over_is_never_switched_off(live_worker):
    calendar = make_calendar()
    make_subscriptions(calendar, 1)
    respond(status_doc("critical"))
    assert fallback(calendar) and auto(calendar)
    # The operator switches it off in the admin; a (still degraded) check runs; then they want
    # it on after all.
    Calendar.objects.filter(pk=calendar.pk).update(fallback_polling_enabled=False)
    respond(status_doc("degraded"))
    assert not auto(calendar)
    Calendar.objects.filter(pk=calendar.pk).update(fallback_polling_enabled=True)

    respond(status_doc("healthy"))

    assert fallback(calendar)


def test_nothing_is_attempted_while_the_database_is_down():
    calendar = make_calendar()
    with database_unreachable():
        health = get_system_health()
        result = respond(health)
    assert result.errors == ["database unreachable: no automatic response possible"]
    assert not fallback(calendar)
