"""The subscription manager: every calendar on push always has a live channel, and nothing
else is left running.

These are the calls made from outside the subscription flow; the work is done in
- ``push_channels``: opening and stopping one channel, failures and backoff, revoked
  accounts, the per-calendar lock;
- ``renewal``: creation, renewal (Google replacement with overlap, Graph PATCH), repair,
  Graph lifecycle events;
- ``orphans``: stopping channels the receivers reported as unknown;
- ``maintenance``: the periodic pass that plans and carries out all of the above.
"""

from __future__ import annotations

from apps.calendars.models import Calendar
from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.flags import push_wanted
from apps.webhooks.services.subscriptions.maintenance import MaintenanceSummary, reconcile_calendar
from apps.webhooks.services.subscriptions.push_channels import (
    LOCK_WAIT_SECONDS,
    CalendarBusy,
    Status,
    calendar_lock,
    stop_channel,
)


def current_subscription(calendar: Calendar) -> WebhookSubscription | None:
    """The calendar's newest active channel, if any."""
    return (calendar.webhook_subscriptions.filter(status=Status.ACTIVE, replaced_by__isnull=True)
            .order_by("-created_at", "-pk").first())


def ensure_subscription(calendar: Calendar) -> WebhookSubscription | None:
    """Make sure a calendar that should be on push has a live channel (creating, renewing or
    repairing it as maintenance would, backoff included). Returns the live channel, or None
    when push is not wanted or could not be established now (maintenance retries)."""
    if not push_wanted(calendar):
        return None
    reconcile_calendar(calendar.pk, MaintenanceSummary(), wait=LOCK_WAIT_SECONDS)
    return current_subscription(calendar)


def stop_subscription(sub: WebhookSubscription, reason: str) -> bool:
    """Stop the channel at the provider and locally. False when the provider could not be
    reached; maintenance tries again (and leaves it to expire after repeated failures)."""
    with calendar_lock(sub.calendar_id, wait=LOCK_WAIT_SECONDS) as acquired:
        if not acquired:
            raise CalendarBusy(f"calendar {sub.calendar_id} is being worked on elsewhere")
        sub.refresh_from_db()
        return stop_channel(sub, reason)
