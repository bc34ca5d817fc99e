"""Graph lifecycle notifications, as the sandbox sends them through the real receiver:
reauthorizationRequired → reauthorize; subscriptionRemoved → recreate, then catch up;
missed → catch up."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from apps.webhooks.models import WebhookNotification
from apps.webhooks.services.queue import worker as worker_module
from apps.webhooks.services.queue.worker import NotificationWorker
from apps.webhooks.services.subscriptions.renewal import create_subscription, handle_lifecycle
from tests.support.factories import connect_account
from tests.support.sandbox import call_count, remote_channels, set_faults

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sub(sandbox, live_server, settings, user):
    settings.WEBHOOK_BASE_URL = live_server.url
    _, (calendar,), _ = connect_account(sandbox.url, user, "microsoft")
    return create_subscription(calendar)


def deliver(sandbox, sub, event: str) -> WebhookNotification:
    """Have Graph send the lifecycle event; return it as the receiver stored it."""
    set_faults(sandbox.url, lifecycle=[{"subscription_id": sub.channel_id, "event": event}])
    assert sandbox.pusher.wait_idle(timeout=10)
    return WebhookNotification.objects.get(subscription=sub, kind="lifecycle",
                                           resource_state=event)


def test_missed_notifications_ask_for_a_catch_up_sync_and_nothing_else(sandbox, sub):
    stored = deliver(sandbox, sub, "missed")
    calls = call_count(sandbox.url, "graph.subscriptions.reauthorize") + call_count(
        sandbox.url, "graph.subscriptions.create")

    assert handle_lifecycle(stored.subscription, stored.resource_state) is True

    sub.refresh_from_db()
    assert sub.status == "active"
    assert calls == call_count(sandbox.url, "graph.subscriptions.reauthorize") + call_count(
        sandbox.url, "graph.subscriptions.create")


def test_reauthorization_required_reauthorizes_the_same_subscription(sandbox, sub):
    stored = deliver(sandbox, sub, "reauthorizationRequired")

    assert handle_lifecycle(stored.subscription, stored.resource_state) is False

    sub.refresh_from_db()
    assert sub.status == "active" and sub.failure_count == 0
    assert call_count(sandbox.url, "graph.subscriptions.reauthorize") == 1
    assert call_count(sandbox.url, "graph.subscriptions.create") == 1
    assert remote_channels(sandbox.url)[sub.channel_id]["live"]


def test_a_removed_subscription_is_recreated_and_a_catch_up_sync_asked_for(sandbox, sub):
    stored = deliver(sandbox, sub, "subscriptionRemoved")
    assert not remote_channels(sandbox.url)[sub.channel_id]["live"]

    assert handle_lifecycle(stored.subscription, stored.resource_state) is True

    sub.refresh_from_db()
    successor = sub.replaced_by
    assert sub.status == "stopped" and successor.status == "active"
    assert remote_channels(sandbox.url)[successor.channel_id]["live"]


def test_reauthorizing_a_subscription_graph_dropped_creates_a_new_one(sandbox, sub):
    stored = deliver(sandbox, sub, "reauthorizationRequired")
    set_faults(sandbox.url, expire_subscription=[sub.channel_id])

    assert handle_lifecycle(stored.subscription, stored.resource_state) is True

    sub.refresh_from_db()
    assert sub.status == "stopped"
    assert remote_channels(sandbox.url)[sub.replaced_by.channel_id]["live"]


def test_events_for_a_subscription_already_replaced_change_nothing(sandbox, sub):
    stored = deliver(sandbox, sub, "subscriptionRemoved")
    assert handle_lifecycle(stored.subscription, "subscriptionRemoved") is True
    creations = call_count(sandbox.url, "graph.subscriptions.create")

    # Graph redelivers the same lifecycle event: the calendar is already covered again.
    assert handle_lifecycle(stored.subscription, "subscriptionRemoved") is False
    assert handle_lifecycle(stored.subscription, "reauthorizationRequired") is False
    assert call_count(sandbox.url, "graph.subscriptions.create") == creations


def test_a_removal_is_not_undone_for_a_calendar_that_left_the_rollout(sandbox, sub, settings):
    stored = deliver(sandbox, sub, "subscriptionRemoved")
    settings.WEBHOOK_ROLLOUT_PERCENTAGE = 0

    assert handle_lifecycle(stored.subscription, stored.resource_state) is False

    sub.refresh_from_db()
    assert sub.status == "stopped" and sub.replaced_by is None
    assert call_count(sandbox.url, "graph.subscriptions.create") == 1


class WorkerKilled(BaseException):
    """The process dies (SIGKILL, out of memory): nothing the worker could catch."""


def test_a_worker_crash_after_a_recreation_neither_recreates_again_nor_skips_the_catch_up(
        sandbox, sub, settings, monkeypatch):
    settings.WORKER_COALESCE_SECONDS = settings.WORKER_BURST_MAX_WAIT_SECONDS = 0
    settings.WORKER_VISIBILITY_TIMEOUT_SECONDS = 60
    stored = deliver(sandbox, sub, "subscriptionRemoved")

    def killed(calendar_id: int) -> None:
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(worker_module, "sync_calendar_id", killed)
        with pytest.raises(WorkerKilled):  # recreated, then died during the catch-up sync
            NotificationWorker("dead:1:aaaa").handle_one()
    creations = call_count(sandbox.url, "graph.subscriptions.create")
    syncs = call_count(sandbox.url, "graph.events.delta")

    survivor = NotificationWorker("live:2:bbbb")
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        assert survivor.reclaim_stuck() == 1
        survivor.handle_one()

    stored.refresh_from_db()
    assert stored.processing_status == WebhookNotification.Status.COMPLETED
    assert call_count(sandbox.url, "graph.subscriptions.create") == creations
    assert call_count(sandbox.url, "graph.events.delta") > syncs  # the catch-up did run
