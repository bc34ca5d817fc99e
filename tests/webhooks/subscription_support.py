"""Helpers for the subscription-manager tests (a uniquely named module, imported by the tests
in this directory): sandbox accounts mirrored as local rows, the sandbox's view of channels,
and a sandbox clock that follows time_machine."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Any

import requests
import time_machine
from sync_support import counter as call_count  # noqa: F401 - the sandbox admin API helpers
from sync_support import sandbox_state, set_faults  # noqa: F401

_serial = itertools.count(1)


def follow_clock(url: str) -> None:
    """Make the sandbox's "now" equal this process's (possibly travelled) ``time.time()``.

    Robust to the sandbox running in this process (where time_machine already moves its
    clock) or in another one: the offset is corrected by the difference actually observed.
    """
    current = requests.get(f"{url}/_sandbox/clock", timeout=10).json()
    offset = current["offset_seconds"] + (time.time() - current["now"])
    response = requests.post(f"{url}/_sandbox/clock", json={"offset_seconds": offset},
                             timeout=10)
    assert response.status_code == 200, response.text


def connect_account(url: str, user, provider: str = "google", email: str | None = None,
                    calendars: int = 1):
    """A sandbox account and its local CalendarAccount + Calendar rows."""
    from apps.calendars.models import Calendar, CalendarAccount

    email = email or f"{provider}-{next(_serial)}@example.com"
    response = requests.post(f"{url}/_sandbox/accounts", timeout=10,
                             json={"provider": provider, "email": email,
                                   "calendars": calendars})
    assert response.status_code in (200, 201), response.text
    data = response.json()
    account = CalendarAccount.objects.create(
        user=user, provider=provider, email=email, refresh_token=data["refresh_token"])
    rows = [Calendar.objects.create(calendar_account=account, provider_calendar_id=c["id"],
                                    name=c["name"]) for c in data["calendars"]]
    return account, rows, data


def remote_channels(url: str) -> dict[str, dict[str, Any]]:
    """Every Google channel and Graph subscription the sandbox knows, by id."""
    state = sandbox_state(url)
    channels = {c["id"]: {**c, "provider": "google"} for c in state["google_channels"]}
    channels.update({s["id"]: {**s, "provider": "microsoft"}
                     for s in state["graph_subscriptions"]})
    return channels


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


def push_address_nowhere(url: str) -> str:
    """A WEBHOOK_BASE_URL whose pushes the sandbox gives up on at once (a sink answering 400
    to an empty body), for tests that do not need notifications delivered."""
    return f"{url}/_sandbox/sinks/webhook/nowhere"


def maintenance_at(url: str, when: datetime):
    """``run_maintenance()`` at ``when`` (the clock ticking), with the sandbox's clock moved
    along and back again afterwards; its summary."""
    from apps.webhooks.services.subscriptions.maintenance import run_maintenance

    with time_machine.travel(when, tick=True):
        follow_clock(url)
        summary = run_maintenance()
    follow_clock(url)
    return summary


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


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


def fresh_access_token(url: str, provider: str, email: str) -> str:
    """A bearer token valid at the sandbox's current (virtual) time, to act as the user."""
    response = requests.post(f"{url}/_sandbox/accounts", timeout=10,
                             json={"provider": provider, "email": email})
    assert response.status_code in (200, 201), response.text
    return response.json()["access_token"]
