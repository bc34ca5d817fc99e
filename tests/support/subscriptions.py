"""Drivers for the subscription tests: push coverage as the sandbox sees it, maintenance and
polling passes at a travelled time (the sandbox's clock following), channels we do not know."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import requests
import time_machine
from django.utils import timezone

from tests.support.sandbox import follow_clock, fresh_access_token, remote_channels, sandbox_state


def uncovered_calendars(url: str, calendars) -> list[str]:
    """Calendars without an active subscription that the sandbox holds live and unexpired."""
    from apps.webhooks.models import WebhookSubscription

    remote = remote_channels(url)
    covered = {
        calendar_id for calendar_id, channel_id in WebhookSubscription.objects.filter(
            calendar__in=calendars, status="active").values_list("calendar_id", "channel_id")
        if remote.get(channel_id, {}).get("live")
    }
    return [f"{c.pk}:{c.provider_calendar_id}" for c in calendars if c.pk not in covered]


def maintenance_at(url: str, when: datetime):
    """``run_maintenance()`` at ``when`` (the clock ticking), with the sandbox's clock moved
    along and back again afterwards; its summary."""
    from apps.webhooks.services.subscriptions.maintenance import run_maintenance

    with time_machine.travel(when, tick=True):
        follow_clock(url)
        summary = run_maintenance()
    follow_clock(url)
    return summary


def polling_pass(calendars):
    """One ``poll_calendars`` pass with these calendars due now and freshly synced, so that
    push coverage alone decides whether each one is polled (reason ``uncovered``)."""
    from django.utils import timezone

    from apps.calendars.models import Calendar
    from apps.calendars.services.polling import poll_due_calendars
    from apps.webhooks.services.subscriptions.polling_policy import push_coverage

    now = timezone.now()
    Calendar.objects.filter(pk__in=[c.pk for c in calendars]).update(
        next_sync_at=now, last_synced_at=now)
    return poll_due_calendars(is_covered=push_coverage())


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


def stray_graph_subscription(sandbox, email: str, calendar_id: str, address: str) -> str:
    """A Graph subscription made outside our bookkeeping, its notifications sent to us."""
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


def graph_mailbox(url: str, email: str) -> dict:
    """What Graph names an account's mailbox by in its notifications."""
    remote = next(a for a in sandbox_state(url)["accounts"] if a["email"] == email)
    return {"tenantId": remote["tenant_id"], "resource": f"Users/{remote['user_id']}/Events/AAM"}


def lost_graph_creation(url: str, calendar) -> dict:
    """What a Graph subscription creation whose answer never came leaves behind, with earlier
    notifications from the account's mailbox (so an orphan there is this account's); the
    mailbox."""
    from apps.webhooks.models import WebhookNotification, WebhookSubscription

    WebhookSubscription.objects.create(calendar=calendar, provider="microsoft",
                                       channel_id=f"pending:{uuid.uuid4()}", status="failed",
                                       failure_count=1, last_error="transient: timed out")
    mailbox = graph_mailbox(url, calendar.calendar_account.email)
    earlier = WebhookSubscription.objects.create(calendar=calendar, provider="microsoft",
                                                 channel_id=str(uuid.uuid4()), status="expired")
    WebhookNotification.objects.create(subscription=earlier, provider="microsoft",
                                       dedup_key=str(uuid.uuid4()), payload=mailbox)
    return mailbox
