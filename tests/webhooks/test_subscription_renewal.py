"""Renewal timing: ahead of expiry with margin, spread out by jitter, retried with backoff."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.push_channels import renewal_time
from apps.webhooks.services.subscriptions.renewal import create_subscription
from tests.support.factories import connect_account
from tests.support.sandbox import call_count, remote_channels, set_faults
from tests.support.subscriptions import maintenance_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def calendar(sandbox, push_nowhere, user):
    _, calendars, _ = connect_account(sandbox.url, user, "google")
    return calendars[0]



def test_a_channel_is_renewed_once_its_renewal_time_has_come_and_not_before(sandbox, calendar):
    sub = create_subscription(calendar)

    early = maintenance_at(sandbox.url, sub.renew_at - timedelta(minutes=5))
    due = maintenance_at(sandbox.url, sub.renew_at + timedelta(minutes=5))

    assert early.changes == 0
    assert due["renewed"] == 1
    sub.refresh_from_db()
    successor = sub.replaced_by
    remote = remote_channels(sandbox.url)
    assert sub.status == "stopped" and remote[sub.channel_id]["stopped"]
    assert successor.status == "active" and remote[successor.channel_id]["live"]
    assert successor.channel_id != sub.channel_id
    # Renewed with a third of the lifetime (days) still left on the old channel.
    assert sub.expires_at - sub.renew_at > timedelta(days=2)
    assert successor.expires_at > sub.expires_at


def test_channels_created_together_renew_spread_over_hours(settings):
    created = datetime(2030, 1, 1, tzinfo=UTC)
    expires = created + timedelta(days=7)

    times = [renewal_time(str(uuid.uuid4()), expires, created) for _ in range(2000)]

    jitter_window = timedelta(days=7) * settings.WEBHOOK_RENEW_JITTER_FRACTION
    assert max(times) - min(times) > jitter_window * 0.95
    assert max(times) <= expires - timedelta(days=7) / 3
    per_minute = Counter(t.replace(second=0, microsecond=0) for t in times)
    # 2000 channels over ~17 hours: a handful per minute at most, never a stampede.
    assert max(per_minute.values()) <= 12


def test_the_same_channel_always_gets_the_same_renewal_time():
    created = datetime(2030, 1, 1, tzinfo=UTC)
    expires = created + timedelta(days=7)

    assert renewal_time("chan-a", expires, created) == renewal_time("chan-a", expires, created)


def test_a_failed_replacement_keeps_the_old_channel_and_is_retried_after_backoff(sandbox,
                                                                                   calendar,
                                                                                   settings):
    sub = create_subscription(calendar)
    set_faults(sandbox.url, fail_next={"google.events.watch": [503]})
    due = sub.renew_at + timedelta(minutes=1)

    failed = maintenance_at(sandbox.url, due)

    sub.refresh_from_db()
    assert failed["failed"] == 1 and failed["renewed"] == 0
    assert sub.status == "active" and sub.failure_count == 1 and sub.replaced_by is None
    assert "503" in sub.last_error
    assert remote_channels(sandbox.url)[sub.channel_id]["live"]
    base = settings.WEBHOOK_REPAIR_BACKOFF_BASE_SECONDS
    assert timedelta(seconds=base - 5) < sub.next_retry_at - due < timedelta(seconds=base + 60)
    # The attempt that failed left no second live row behind.
    assert WebhookSubscription.objects.exclude(status="stopped").count() == 1

    watches = call_count(sandbox.url, "google.events.watch")
    assert maintenance_at(sandbox.url, sub.next_retry_at - timedelta(seconds=20)).changes == 0
    assert call_count(sandbox.url, "google.events.watch") == watches

    retried = maintenance_at(sandbox.url, sub.next_retry_at + timedelta(seconds=5))

    sub.refresh_from_db()
    assert retried["renewed"] == 1
    assert sub.replaced_by.status == "active" and sub.replaced_by.failure_count == 0
