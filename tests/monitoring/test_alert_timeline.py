"""Break things in simulated time while cron runs ``webhook_health_check --if-due
--send-alerts`` every minute, and watch what every alert channel receives.

For each break — the database unreachable for the check, subscriptions failing, the worker
dying — the incident reaches every configured channel (the
sandbox's Slack, webhook and PagerDuty sinks, the locmem outbox) within 5 minutes of the break,
exactly once while it lasts, and a resolved message follows the repair — once the condition
has stayed clear for ALERT_RESOLVE_AFTER_SECONDS, and only once.

(Processing failing is an SLO burn, whose timeline is in test_slo.py.) Each break happens at
its worst moment. A break that shows at once (database, subscriptions) comes one second after
a scheduled check, when the next one is a whole interval away. A worker dies 121 s after a
check, so that its heartbeat turns stale (after WORKER_HEARTBEAT_STALE_SECONDS) just after the
next scheduled check found it alive.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from apps.monitoring.models import AutoFallback, HealthSnapshot, Incident
from apps.webhooks.models import WebhookNotification, WebhookSubscription
from tests.support.commands import command
from tests.support.factories import beat, make_calendar, make_notifications, make_subscriptions
from tests.support.outages import database_unreachable
from tests.support.sandbox import seen

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
CHANNELS = ("email", "slack", "webhook", "pagerduty")
PER_MINUTE = 5  # notifications arriving each minute


class World:
    """What runs around the health check: receivers storing notifications, a worker
    heartbeating and processing them, cron calling the check every minute."""

    def __init__(self, sandbox, outbox, clock) -> None:
        self.sandbox, self.outbox, self.clock = sandbox, outbox, clock
        self.subscriptions = [make_subscriptions(make_calendar(), 1)[0] for _ in range(20)]
        self.database_up = True
        self.worker_alive = True
        self.processing_works = True
        # channel -> [(simulated time, incident key, event)]
        self.arrivals: dict[str, list[tuple[datetime, str, str]]] = {c: [] for c in CHANNELS}

    def minute(self) -> None:
        self.clock.shift(timedelta(seconds=60))
        self.tick()

    def tick(self) -> None:
        now = timezone.now()
        if self.database_up:
            sub = self.subscriptions[now.minute % len(self.subscriptions)]
            if self.worker_alive:
                beat()
                WebhookNotification.objects.filter(processing_status="pending").update(
                    processing_status="completed", processing_time_ms=35, processed_at=now)
                status = "completed" if self.processing_works else "failed"
            else:
                status = "pending"
            make_notifications(sub, PER_MINUTE, status=status)
        with nullcontext() if self.database_up else database_unreachable():
            command("webhook_health_check", "--if-due", "--respond", "--send-alerts")
        got = seen(self.sandbox.url, self.outbox)
        for channel in CHANNELS:
            for key, event in got[channel][len(self.arrivals[channel]):]:
                self.arrivals[channel].append((now, key, event))

    def run_until_a_check_just_ran(self) -> None:
        before = HealthSnapshot.objects.count()
        while HealthSnapshot.objects.count() == before:
            self.minute()

    def messages(self, key: str, since: datetime) -> dict[str, list[tuple[datetime, str]]]:
        return {c: [(at, ev) for at, k, ev in self.arrivals[c] if k == key and at >= since]
                for c in CHANNELS}


def break_database(world: World) -> None:
    world.database_up = False


def repair_database(world: World) -> None:
    world.database_up = True


def break_subscriptions(world: World) -> None:
    ids = [s.pk for s in world.subscriptions[:12]]
    WebhookSubscription.objects.filter(pk__in=ids).update(status="failed", failure_count=3)


def repair_subscriptions(world: World) -> None:
    WebhookSubscription.objects.update(status="active", failure_count=0)


def kill_worker(world: World) -> None:
    world.worker_alive = False


def restart_worker(world: World) -> None:
    world.worker_alive = True


# scenario: incident key, seconds after a scheduled check, break, repair
SCENARIOS = {
    "database unreachable": ("database_down", 1, break_database, repair_database),
    "subscriptions failing": ("failed_subscriptions", 1, break_subscriptions,
                              repair_subscriptions),
    "worker dead": ("worker_stale", 121, kill_worker, restart_worker),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_break_is_alerted_everywhere_within_five_minutes_once_then_resolved(
        scenario, all_channels, mailoutbox, settings):
    key, offset, break_it, repair_it = SCENARIOS[scenario]
    with time_machine.travel(T0, tick=False) as clock:
        world = World(all_channels, mailoutbox, clock)
        for _ in range(12):
            world.minute()  # a healthy quarter of an hour: nothing is sent
        assert all(not arrived for arrived in world.arrivals.values())

        world.run_until_a_check_just_ran()
        for _ in range(offset // 60):
            world.minute()
        clock.shift(timedelta(seconds=offset % 60))
        broke_at = timezone.now()
        break_it(world)
        clock.shift(timedelta(seconds=60 - offset % 60))  # cron's next minute
        world.tick()
        for _ in range(24):
            world.minute()

        during = world.messages(key, broke_at)
        for channel in CHANNELS:
            assert len(during[channel]) == 1, (channel, during[channel])
            at, event = during[channel][0]
            assert event == ("trigger" if channel == "pagerduty" else "opened")
            assert at - broke_at <= timedelta(minutes=5), (channel, at - broke_at)

        repaired_at = timezone.now()
        repair_it(world)
        # The success rate window must first forget the failures, then a check must see it,
        # then the condition must stay clear for the resolve delay, then a check must see that.
        delay = settings.ALERT_RESOLVE_AFTER_SECONDS
        window = settings.HEALTH_THRESHOLDS["success_rate_window_seconds"]
        interval = settings.HEALTH_CHECK_INTERVAL_SECONDS
        for _ in range((window + 2 * interval + delay) // 60 + 1):
            world.minute()

    after = world.messages(key, repaired_at)
    for channel in CHANNELS:
        assert [ev for _, ev in after[channel]] == [
            "resolve" if channel == "pagerduty" else "resolved"], (channel, after[channel])
        assert after[channel][0][0] - repaired_at >= timedelta(seconds=delay)
    assert not Incident.objects.filter(resolved_at__isnull=True).exists()
    assert Incident.objects.get(key=key).deliveries.filter(succeeded=True).count() == 8
    # The fallbacks turned on while it was critical were turned off again.
    assert not AutoFallback.objects.exists()
