"""Graph subscriptions: created with both notification URLs, renewed in place by PATCH, and
created anew when Graph no longer knows them (404) or they lapsed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.webhooks.services.subscriptions.renewal import create_subscription
from tests.support.factories import connect_account
from tests.support.sandbox import call_count, remote_channels, set_faults
from tests.support.subscriptions import maintenance_at

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def calendar(sandbox, live_server, settings, user):
    # Graph validates both URLs before it answers: the real receivers must be reachable.
    settings.WEBHOOK_BASE_URL = live_server.url
    _, calendars, _ = connect_account(sandbox.url, user, "microsoft")
    return calendars[0]



def test_a_subscription_is_created_with_both_urls_and_an_allowed_expiry(sandbox, calendar,
                                                                        live_server, settings):
    sub = create_subscription(calendar)

    assert sub.status == "active" and not sub.channel_id.startswith("pending:")
    remote = remote_channels(sandbox.url)[sub.channel_id]
    assert remote["live"] and remote["calendar"] == calendar.provider_calendar_id
    assert remote["notificationUrl"] == f"{live_server.url}/webhooks/microsoft/"
    assert remote["lifecycleNotificationUrl"] == f"{live_server.url}/webhooks/microsoft/lifecycle/"
    assert set(remote["changeType"].split(",")) == {"created", "updated", "deleted"}
    assert remote["clientState"] is True
    lifetime = sub.expires_at - timezone.now()
    assert lifetime <= timedelta(minutes=settings.WEBHOOK_GRAPH_SUBSCRIPTION_MINUTES)
    assert lifetime > timedelta(minutes=settings.WEBHOOK_GRAPH_SUBSCRIPTION_MINUTES - 5)


def test_renewal_extends_the_same_subscription(sandbox, calendar):
    sub = create_subscription(calendar)
    first_expiry = sub.expires_at

    summary = maintenance_at(sandbox.url, sub.renew_at + timedelta(minutes=1))

    sub.refresh_from_db()
    assert summary["renewed"] == 1
    assert sub.status == "active" and sub.expires_at > first_expiry + timedelta(days=2)
    assert sub.renew_at > first_expiry - timedelta(days=3)
    assert call_count(sandbox.url, "graph.subscriptions.renew") == 1
    assert call_count(sandbox.url, "graph.subscriptions.create") == 1
    remote = remote_channels(sandbox.url)[sub.channel_id]
    assert remote["live"]


def test_a_subscription_graph_forgot_is_created_again(sandbox, calendar):
    sub = create_subscription(calendar)
    set_faults(sandbox.url, expire_subscription=[sub.channel_id])

    summary = maintenance_at(sandbox.url, sub.renew_at + timedelta(minutes=1))

    sub.refresh_from_db()
    successor = sub.replaced_by
    assert summary["renewed"] == 1 and summary["failed"] == 0
    assert sub.status == "stopped" and successor.status == "active"
    assert successor.channel_id != sub.channel_id
    assert remote_channels(sandbox.url)[successor.channel_id]["live"]
    assert call_count(sandbox.url, "graph.subscriptions.create") == 2


def test_a_subscription_that_lapsed_is_counted_and_repaired(sandbox, calendar):
    sub = create_subscription(calendar)

    summary = maintenance_at(sandbox.url, sub.expires_at + timedelta(hours=1))

    sub.refresh_from_db()
    assert summary["lapsed"] == 1 and summary["repaired"] == 1
    assert sub.status == "stopped" and sub.replaced_by.status == "active"
    assert remote_channels(sandbox.url)[sub.replaced_by.channel_id]["live"]
