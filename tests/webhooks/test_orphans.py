"""Orphans: channels that notify us but that we do not know. Stopped when the owning account
can be found, otherwise left to expire and counted."""

from __future__ import annotations

import pytest
import requests
from django.db.models import F

from apps.webhooks.models import OrphanChannel, WebhookSubscription
from apps.webhooks.services.subscriptions.maintenance import run_maintenance
from apps.webhooks.services.subscriptions.orphans import stop_orphans
from apps.webhooks.services.subscriptions.renewal import create_subscription
from tests.support.factories import connect_account
from tests.support.sandbox import remote_channels, set_faults
from tests.support.subscriptions import (
    lost_graph_creation,
    stray_google_channel,
    stray_graph_subscription,
)

pytestmark = [pytest.mark.django_db(transaction=True)]


def seen_again(channel_id: str) -> None:
    """The stray channel notifies once more (a forged id is typically seen once)."""
    OrphanChannel.objects.filter(channel_id=channel_id).update(hits=F("hits") + 1)


def test_an_unknown_channel_on_a_known_calendar_is_stopped(sandbox, receivers, user):
    account, (calendar,), _ = connect_account(sandbox.url, user, "google")
    create_subscription(calendar)
    stray = stray_google_channel(sandbox, account.email, calendar.provider_calendar_id, receivers)
    orphan = OrphanChannel.objects.get(channel_id=stray)  # recorded by the receiver
    assert orphan.resource_id
    seen_again(stray)

    summary = run_maintenance()

    orphan.refresh_from_db()
    assert summary["orphans stopped"] == 1 and orphan.status == "stopped"
    assert remote_channels(sandbox.url)[stray]["stopped"]


def test_a_channel_whose_owner_is_unknown_is_left_to_expire_and_counted(sandbox, receivers, user):
    # An account that is not (or no longer) connected here.
    response = requests.post(f"{sandbox.url}/_sandbox/accounts", timeout=5,
                             json={"provider": "google", "email": "gone@example.com"})
    stray = stray_google_channel(sandbox, "gone@example.com", response.json()["calendars"][0]["id"],
                                 receivers)
    seen_again(stray)

    summary = run_maintenance()

    orphan = OrphanChannel.objects.get(channel_id=stray)
    assert summary["orphans abandoned"] == 1 and orphan.status == "abandoned"
    assert orphan.resolved_at is not None
    assert remote_channels(sandbox.url)[stray]["live"]
    assert run_maintenance()["orphans abandoned"] == 0  # counted once


def test_a_channel_reported_before_its_creation_was_recorded_is_not_stopped(sandbox, receivers,
                                                                           user):
    _, (calendar,), _ = connect_account(sandbox.url, user, "google")
    sub = create_subscription(calendar)
    OrphanChannel.objects.create(provider="google", channel_id=sub.channel_id,
                                 resource_id=sub.resource_id)

    stop_orphans()

    assert not OrphanChannel.objects.exists()
    assert remote_channels(sandbox.url)[sub.channel_id]["live"]


def test_an_old_graph_subscription_still_notifying_is_deleted(sandbox, receivers, user):
    _, (calendar,), _ = connect_account(sandbox.url, user, "microsoft")
    sub = create_subscription(calendar)
    # Our row says stopped, but the DELETE never reached Graph.
    WebhookSubscription.objects.filter(pk=sub.pk).update(status="stopped")
    OrphanChannel.objects.create(provider="microsoft", channel_id=sub.channel_id, hits=2)

    assert stop_orphans().stopped == 1
    assert not remote_channels(sandbox.url)[sub.channel_id]["live"]


def test_a_graph_subscription_whose_creation_answer_was_lost_is_deleted(sandbox, receivers, user):
    account, (calendar,), _ = connect_account(sandbox.url, user, "microsoft")
    stray = stray_graph_subscription(sandbox, account.email, calendar.provider_calendar_id,
                                     receivers)
    mailbox = lost_graph_creation(sandbox.url, calendar)
    OrphanChannel.objects.create(provider="microsoft", channel_id=stray, hits=2,
                                 tenant_id=mailbox["tenantId"], resource_uri=mailbox["resource"])

    summary = stop_orphans()

    assert summary.stopped == 1
    assert not remote_channels(sandbox.url)[stray]["live"]


def test_a_graph_subscription_nobody_can_own_is_abandoned(sandbox, receivers, user):
    account, (calendar,), _ = connect_account(sandbox.url, user, "microsoft")
    stray = stray_graph_subscription(sandbox, account.email, calendar.provider_calendar_id,
                                     receivers)
    OrphanChannel.objects.create(provider="microsoft", channel_id=stray, hits=2)

    assert stop_orphans().abandoned == 1
    assert remote_channels(sandbox.url)[stray]["live"]


def test_an_orphan_is_kept_for_the_next_run_while_the_provider_is_down(sandbox, receivers, user):
    account, (calendar,), _ = connect_account(sandbox.url, user, "google")
    create_subscription(calendar)
    stray = stray_google_channel(sandbox, account.email, calendar.provider_calendar_id, receivers)
    seen_again(stray)
    set_faults(sandbox.url, fail_next={"google.channels.stop": [503]})

    assert stop_orphans().retry == 1
    assert OrphanChannel.objects.get(channel_id=stray).status == "open"
    assert stop_orphans().stopped == 1
