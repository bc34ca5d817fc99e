"""Builders of real rows: accounts and calendars (also connected to a sandbox account),
subscriptions, notifications as the receivers and the worker leave them, provider calls,
worker heartbeats."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta

from django.utils import timezone

from tests.support.sandbox import RemoteAccount, remote_account

_seq = itertools.count(1)


def make_calendar(provider: str = "google", *, user=None, **fields):
    from django.contrib.auth import get_user_model

    from apps.calendars.models import Calendar, CalendarAccount

    n = next(_seq)
    if user is None:
        user = get_user_model().objects.create_user(f"user{n}", f"user{n}@example.com", "pw")
    account = CalendarAccount.objects.create(
        user=user, provider=provider, email=f"user{n}@example.com",
        status=fields.pop("account_status", "active"),
    )
    return Calendar.objects.create(calendar_account=account, provider_calendar_id=f"cal-{n}",
                                   name=fields.pop("name", f"Calendar {n}"), **fields)


def connect_account(url: str, user, provider: str = "google", email: str | None = None,
                    calendars: int | list[str] = 1) -> tuple:
    """A new sandbox account and its local rows, as the OAuth flow leaves them:
    ``(CalendarAccount, [Calendar], RemoteAccount)``."""

    remote = remote_account(url, provider, email or f"{provider}-{next(_seq)}@example.com",
                            calendars)
    return (*_local_rows(user, remote), remote)


def _local_rows(user, remote: RemoteAccount) -> tuple:
    from apps.calendars.models import Calendar, CalendarAccount

    account = CalendarAccount.objects.create(user=user, provider=remote.provider,
                                             email=remote.email,
                                             refresh_token=remote.refresh_token)
    return account, [Calendar.objects.create(calendar_account=account, provider_calendar_id=cid,
                                             name=name)
                     for cid, name in zip(remote.calendar_ids, remote.calendar_names,
                                          strict=True)]


def synced_and_subscribed(calendar):
    """A first full sync, then a live push channel for ``calendar``, as onboarding does."""
    from apps.calendars.services.sync_engine import sync_calendar
    from apps.webhooks.models import WebhookSubscription
    from apps.webhooks.services.subscriptions.renewal import create_subscription

    assert sync_calendar(calendar).ok
    subscription = create_subscription(calendar)
    assert subscription.status == WebhookSubscription.Status.ACTIVE, subscription.last_error
    return subscription


def make_microsoft_calendar(user):
    """An Outlook calendar with tokens in place (no sandbox account behind it)."""
    from apps.calendars.models import Calendar, CalendarAccount

    account = CalendarAccount.objects.create(user=user, provider="microsoft",
                                             email="alice@contoso.example",
                                             access_token="eyJ.access", refresh_token="M.refresh")
    return Calendar.objects.create(calendar_account=account, provider_calendar_id="AAMkAD",
                                   name="Alice (Outlook)")


def make_subscription(calendar=None, provider: str | None = None, status: str = "active",
                      resource_id: str = "", **fields) -> tuple:
    """One subscription with its token issued, as the subscription manager leaves it:
    ``(WebhookSubscription, raw token)``. Without a calendar, a new Google one."""
    from apps.webhooks.models import WebhookSubscription

    calendar = calendar or make_calendar(provider or "google")
    fields.setdefault("channel_id", str(uuid.uuid4()))
    fields.setdefault("expires_at", timezone.now() + timedelta(days=3))
    subscription = WebhookSubscription(
        calendar=calendar, provider=provider or calendar.calendar_account.provider,
        status=status, resource_id=resource_id, **fields)
    token = subscription.issue_token()
    subscription.save()
    return subscription, token


def make_subscriptions(calendar, count: int, status: str = "active", **fields) -> list:
    from apps.webhooks.models import WebhookSubscription

    now = timezone.now()
    fields.setdefault("expires_at", now + timedelta(days=5))
    return WebhookSubscription.objects.bulk_create([
        WebhookSubscription(calendar=calendar, provider=calendar.calendar_account.provider,
                            channel_id=f"ch-{uuid.uuid4().hex}", status=status,
                            created_at=now - timedelta(days=1), **fields)
        for _ in range(count)
    ])


def store_notifications(subscription, count: int = 1, *, kind: str = "change",
                        state: str = "exists") -> list:
    """Pending rows as the receivers store them (one per delivery)."""
    from apps.webhooks.models import WebhookNotification

    return WebhookNotification.objects.bulk_create([
        WebhookNotification(subscription=subscription, provider=subscription.provider,
                            kind=kind, resource_state=state, dedup_key=str(uuid.uuid4()))
        for _ in range(count)
    ])


def make_notifications(subscription, count: int, status: str = "completed",
                       received_at: datetime | None = None, processing_time_ms: int | None = 40,
                       **fields) -> list:
    from apps.webhooks.models import WebhookNotification
    from apps.webhooks.services.queue.notification_rows import record_finished
    from calendar_sync import sli

    received_at = received_at or timezone.now()
    if status in ("pending", "processing"):
        processing_time_ms = None
    rows = WebhookNotification.objects.bulk_create([
        WebhookNotification(subscription=subscription, provider=subscription.provider,
                            received_at=received_at, resource_state="exists",
                            dedup_key=uuid.uuid4().hex, processing_status=status,
                            processing_time_ms=processing_time_ms,
                            headers={"X-Goog-Channel-Token": "secret-channel-token"}, **fields)
        for _ in range(count)
    ])
    # Counted in the rollups as the receiver and the worker count them.
    sli.record(subscription.provider, received_at, notifications_received=count)
    if status not in ("pending", "processing"):
        finished = received_at + timedelta(milliseconds=processing_time_ms or 0)
        record_finished(rows, status, finished, processing_time_ms)
    return rows


def make_api_call(at: datetime, duration_ms: int = 90, error_kind: str = "",
                  provider: str = "google") -> None:
    """One provider call recorded as ``calendar_sync.http`` records it, at ``at``."""
    import time_machine

    from calendar_sync.http import record_call

    with time_machine.travel(at, tick=False):
        record_call(provider, "events.list", 200, duration_ms, error_kind)


def beat(worker_id: str = "worker-1", at: datetime | None = None):
    """A worker's heartbeat, as the worker loop writes it."""
    from apps.webhooks.models import WorkerHeartbeat

    row, _ = WorkerHeartbeat.objects.update_or_create(
        worker_id=worker_id, defaults={"last_seen_at": at or timezone.now(), "stopped_at": None}
    )
    return row
