"""When a calendar's waiting notifications become one sync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.webhooks.services.queue.coalescing import CalendarQueue, ready_at

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def _rules(settings):
    settings.WORKER_COALESCE_SECONDS = 1.0
    settings.WORKER_BURST_QUIET_SECONDS = 0.3
    settings.WORKER_BURST_MAX_WAIT_SECONDS = 3.0


@pytest.mark.parametrize("last_synced", [None, ago(3.0), ago(3600)])
def test_a_quiet_calendar_is_synced_on_its_first_notifications(last_synced):
    queue = CalendarQueue(1, pending=4, newest=ago(0.01), oldest=ago(0.05),
                          last_synced_at=last_synced)
    assert ready_at(queue, NOW) == NOW


def test_a_calendar_is_not_synced_twice_within_the_cooldown():
    queue = CalendarQueue(1, pending=1, newest=ago(0.1), oldest=ago(0.1),
                          last_synced_at=ago(0.4))
    assert ready_at(queue, NOW) == NOW + timedelta(seconds=0.6)


def test_after_the_cooldown_a_single_notification_goes_at_once():
    queue = CalendarQueue(1, pending=1, newest=ago(0.01), oldest=ago(0.01),
                          last_synced_at=ago(1.5))
    assert ready_at(queue, NOW) == NOW


def test_a_burst_still_arriving_is_awaited_until_it_goes_quiet():
    queue = CalendarQueue(1, pending=40, newest=ago(0.1), oldest=ago(1.2),
                          last_synced_at=ago(1.5))
    assert ready_at(queue, NOW) == NOW + timedelta(seconds=0.2)


def test_a_burst_that_never_goes_quiet_waits_at_most_the_maximum():
    queue = CalendarQueue(1, pending=400, newest=ago(0.0), oldest=ago(2.9),
                          last_synced_at=ago(2.95))
    assert ready_at(queue, NOW) == NOW + timedelta(seconds=0.1)
