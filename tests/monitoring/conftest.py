"""Builders of real rows for the monitor, alert channel settings, a database outage."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

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


@contextmanager
def database_unreachable() -> Iterator[None]:
    """Every query on this connection fails as if the server were gone.

    Savepoint statements still pass so that the test's own transaction stays usable.
    """
    def refuse(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")):
            return execute(sql, params, many, context)
        raise OperationalError("could not connect to server: Connection refused")

    with connection.execute_wrapper(refuse):
        yield


@pytest.fixture(autouse=True)
def _no_counts_from_earlier_tests() -> Iterator[None]:
    """Receivers count in the process before the cache: start each test without others'."""
    from calendar_sync import sli

    sli.discard_process_counts()
    yield


@pytest.fixture
def calendar(db):
    return make_calendar()


@pytest.fixture
def live_worker(db):
    return beat()


@pytest.fixture
def all_channels(sandbox, settings):
    """Every alert channel on, pointed at the sandbox sinks (email: the locmem outbox)."""
    settings.WEBHOOK_ALERT_CHANNELS = ["email", "slack", "webhook", "pagerduty"]
    settings.WEBHOOK_ALERT_EMAIL_RECIPIENTS = ["oncall@example.com", "ops@example.com"]
    settings.SLACK_WEBHOOK_URL = f"{sandbox.url}/_sandbox/sinks/slack/T000/B000/XXXSECRET"
    settings.EXTERNAL_ALERT_WEBHOOK_URL = f"{sandbox.url}/_sandbox/sinks/webhook/alerts"
    settings.PAGERDUTY_ROUTING_KEY = "routing-key-secret-0123456789abcdef"
    settings.PAGERDUTY_EVENTS_URL = f"{sandbox.url}/v2/enqueue"
    settings.ALERT_DELIVERY_RETRY_BASE_SECONDS = 0.0
    return sandbox


def sinks(sandbox) -> dict:
    import requests

    return requests.get(f"{sandbox.url}/_sandbox/sinks", timeout=5).json()


def fault(sandbox, **config) -> dict:
    import requests

    response = requests.post(f"{sandbox.url}/_sandbox/faults", json=config, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("staff", "staff@example.com", "pw",
                                                 is_staff=True)


def seen(sandbox, outbox) -> dict[str, list[tuple[str, str]]]:
    """What each channel received, as (incident key, event) pairs in arrival order.

    PagerDuty only knows trigger / resolve: its events are reported as such.
    """
    got = sinks(sandbox)
    out: dict[str, list[tuple[str, str]]] = {"email": [], "slack": [], "webhook": [],
                                             "pagerduty": []}
    for mail in outbox:
        fields = dict(line.split(": ", 1) for line in mail.body.splitlines() if ": " in line)
        out["email"].append((fields["Incident"], fields["Event"]))
    for entry in got["slack"]:
        key_field, event_field = entry["body"]["blocks"][2]["fields"][:2]
        out["slack"].append((key_field["text"].split("`")[1], event_field["text"].split("\n")[1]))
    for entry in got["webhook"]:
        out["webhook"].append((entry["body"]["incident_key"], entry["body"]["event"]))
    for entry in got["pagerduty"]:
        out["pagerduty"].append((entry["body"]["dedup_key"], entry["body"]["event_action"]))
    assert got["rejected"] == [], got["rejected"]
    return out
