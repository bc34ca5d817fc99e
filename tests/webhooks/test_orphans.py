"""Orphans: channels that notify us but that we do not know. Stopped when the owning account
can be found, otherwise left to expire and counted."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import requests
from django.db.models import F
from django.utils import timezone
from subscription_support import (
    connect_account,
    fresh_access_token,
    remote_channels,
    set_faults,
)

from apps.webhooks.models import OrphanChannel, WebhookNotification, WebhookSubscription
from apps.webhooks.services.subscriptions.maintenance import run_maintenance
from apps.webhooks.services.subscriptions.orphans import stop_orphans
from apps.webhooks.services.subscriptions.renewal import create_subscription

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receivers(live_server, settings):
    settings.WEBHOOK_BASE_URL = live_server.url
    return live_server.url


def stray_google_channel(sandbox, email: str, calendar_id: str, address: str) -> str:
    """A channel made outside our bookkeeping (a crashed run, an older deployment...)."""
    channel_id = f"stray-{uuid.uuid4()}"
    response = requests.post(
        f"{sandbox.url}/calendar/v3/calendars/{calendar_id}/events/watch", timeout=5,
        headers={"Authorization": f"Bearer {fresh_access_token(sandbox.url, 'google', email)}"},
        json={"id": channel_id, "type": "web_hook", "address": f"{address}/webhooks/google/"})
    assert response.status_code == 200, response.text
    assert sandbox.pusher.wait_idle(timeout=10)  # its `sync` reached the receiver
    return channel_id


def seen_again(channel_id: str) -> None:
    """The stray channel notifies once more (a forged id is typically seen once)."""
    OrphanChannel.objects.filter(channel_id=channel_id).update(hits=F("hits") + 1)


def stray_graph_subscription(sandbox, email: str, calendar_id: str, address: str) -> str:
    expiry = (timezone.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    token = fresh_access_token(sandbox.url, "microsoft", email)
    response = requests.post(
        f"{sandbox.url}/v1.0/subscriptions", timeout=15,
        headers={"Authorization": f"Bearer {token}"},
        json={"changeType": "created,updated,deleted", "expirationDateTime": expiry,
              "resource": f"/me/calendars/{calendar_id}/events", "clientState": "not-ours",
              "notificationUrl": f"{address}/webhooks/microsoft/"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def graph_mailbox(sandbox, email: str) -> dict:
    """What Graph names an account's mailbox by in its notifications."""
    state = requests.get(f"{sandbox.url}/_sandbox/state", timeout=5).json()
    remote = next(a for a in state["accounts"] if a["email"] == email)
    return {"tenantId": remote["tenant_id"], "resource": f"Users/{remote['user_id']}/Events/AAM"}


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
    # What a creation whose answer never came leaves behind.
    WebhookSubscription.objects.create(calendar=calendar, provider="microsoft",
                                       channel_id=f"pending:{uuid.uuid4()}", status="failed",
                                       failure_count=1, last_error="transient: timed out")
    mailbox = graph_mailbox(sandbox, account.email)
    # Its own notifications, earlier: the mailbox is this account's.
    earlier = WebhookSubscription.objects.create(calendar=calendar, provider="microsoft",
                                                 channel_id=str(uuid.uuid4()), status="expired")
    WebhookNotification.objects.create(subscription=earlier, provider="microsoft",
                                       dedup_key=str(uuid.uuid4()), payload=mailbox)
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
