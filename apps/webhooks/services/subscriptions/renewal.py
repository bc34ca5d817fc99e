"""Keeping a calendar's channel alive: create, renew, repair, and Graph lifecycle events.

Google channels cannot be renewed: a replacement channel is opened first and the old one is
stopped only after the new one is active, so the two overlap and no change falls in a gap.
Graph subscriptions are renewed in place (PATCH); a 404 means the subscription is gone and a
new one is created.

A calendar's retry state (``failure_count``, ``next_retry_at``) lives on its newest open row;
when a row is superseded by a new one, the new one inherits the count, so "consecutive
failures" are counted per calendar, not per attempt.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from apps.calendars.models import Calendar
from apps.calendars.providers.clients import get_client
from apps.calendars.providers.errors import (
    AuthRevoked,
    ClientError,
    NotFound,
    ProviderError,
)
from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.flags import push_unwanted_reason
from apps.webhooks.services.subscriptions.push_channels import (
    LOCK_WAIT_SECONDS,
    REPAIRABLE,
    CalendarBusy,
    Status,
    calendar_lock,
    channel_failed,
    describe_error,
    establish,
    handle_auth_revoked,
    mark_stopped,
    open_channel,
    record_failure,
    renewal_due,
    renewal_time,
    requested_expiry,
    stop_channel,
)

log = logging.getLogger(__name__)


def create_subscription(calendar: Calendar) -> WebhookSubscription:
    """Open a new channel for the calendar. The row is returned whatever happened: ``active``,
    or ``failed``/``suspended`` with ``last_error`` and ``next_retry_at`` set, or ``stopped``
    when the account's authorization turned out to be revoked."""
    with calendar_lock(calendar.pk, wait=LOCK_WAIT_SECONDS) as acquired:
        if not acquired:
            raise CalendarBusy(f"calendar {calendar.pk} is being worked on elsewhere")
        sub = WebhookSubscription(calendar=calendar, provider=calendar.calendar_account.provider)
        establish(sub)
        return sub


def repair(sub: WebhookSubscription, *, gone: bool = False) -> WebhookSubscription:
    """Re-establish the calendar's channel after a failure, a lapse or a removal.

    A row that never got a channel is retried in place. Otherwise a new row takes over (the
    old id stays in the history the orphan sweeper uses), inheriting the failure count; the
    old channel is stopped unless ``gone`` says the provider already dropped it.
    Returns the row that now carries the calendar's channel (or its retry state).
    """
    was_suspended = sub.status == Status.SUSPENDED
    if sub.expires_at is None:
        successor = sub
        ok = establish(sub)
    else:
        successor = WebhookSubscription(calendar=sub.calendar, provider=sub.provider,
                                        failure_count=sub.failure_count)
        ok = establish(successor)
        if successor.status != Status.STOPPED:  # not revoked meanwhile
            _retire(sub, successor, gone=gone)
    if ok and was_suspended:
        # Nothing to switch back: the active channel is what makes polling stop covering it.
        log.info("calendar %s recovered from suspension", sub.calendar_id)
    return successor


def _retire(old: WebhookSubscription, successor: WebhookSubscription, *, gone: bool) -> None:
    old.replaced_by = successor
    old.save(update_fields=["replaced_by", "updated_at"])
    if gone:
        mark_stopped(old, f"gone at the provider; superseded by subscription {successor.pk}")
    else:  # stops it at the provider only if it may still be delivering
        stop_channel(old, f"superseded by subscription {successor.pk}")


def renew_subscription(sub: WebhookSubscription) -> WebhookSubscription:
    """Extend the calendar's coverage before ``sub`` expires. Returns the row now covering
    the calendar: a new row after a Google replacement or a Graph re-creation, else ``sub``."""
    with calendar_lock(sub.calendar_id, wait=LOCK_WAIT_SECONDS) as acquired:
        if not acquired:
            raise CalendarBusy(f"calendar {sub.calendar_id} is being worked on elsewhere")
        sub.refresh_from_db()
        if sub.status in REPAIRABLE:
            return repair(sub)
        if sub.status != Status.ACTIVE or sub.replaced_by_id:
            return sub
        if sub.provider == "google":
            return _replace_google(sub)
        return _renew_graph(sub)


def _replace_google(old: WebhookSubscription) -> WebhookSubscription:
    new = WebhookSubscription(calendar=old.calendar, provider="google")
    try:
        open_channel(new)
    except ProviderError as exc:
        if not isinstance(exc, AuthRevoked):  # a revoked grant stops both locally
            mark_stopped(new, f"replacement failed: {describe_error(exc)}")
        # The old channel still works until it expires: it keeps the retry state.
        channel_failed(old, exc)
        return old
    # Both channels are live now and both are accepted; only then is the old one stopped.
    old.replaced_by = new
    old.save(update_fields=["replaced_by", "updated_at"])
    stop_channel(old, f"replaced by subscription {new.pk}")
    return new


def _renew_graph(sub: WebhookSubscription) -> WebhookSubscription:
    client = get_client(sub.calendar.calendar_account)
    try:
        expires_at = client.renew(sub.channel_id, requested_expiry(sub.provider))
    except NotFound:
        log.info("subscription %s is gone at the provider; creating a new one", sub.pk)
        return repair(sub, gone=True)
    except ProviderError as exc:
        channel_failed(sub, exc)
        return sub
    sub.expires_at = expires_at
    sub.renew_at = renewal_time(sub.channel_id, expires_at, timezone.now())
    sub.failure_count = 0
    sub.last_error = ""
    sub.next_retry_at = None
    sub.save(update_fields=["expires_at", "renew_at", "failure_count", "last_error",
                            "next_retry_at", "updated_at"])
    return sub


def handle_lifecycle(sub: WebhookSubscription, event: str) -> bool:
    """Act on a Graph lifecycle notification; True when the calendar needs a catch-up sync."""
    if event == "missed":
        return True
    known = event in ("reauthorizationRequired", "subscriptionRemoved")
    if not known or sub.provider != "microsoft":  # Google has no lifecycle events
        log.warning("ignoring lifecycle event %r for %s subscription %s", event[:64],
                    sub.provider, sub.pk)
        return False
    with calendar_lock(sub.calendar_id, wait=LOCK_WAIT_SECONDS) as acquired:
        sub.refresh_from_db()
        # A channel we stopped or replaced on purpose needs nothing: its successor or
        # polling covers the calendar.
        if sub.status == Status.STOPPED or sub.replaced_by_id:
            return False
        if not acquired:
            if event == "subscriptionRemoved":
                # Busy elsewhere: mark it lapsed so that the next maintenance run repairs it.
                WebhookSubscription.objects.filter(pk=sub.pk, status=Status.ACTIVE).update(
                    status=Status.EXPIRED, next_retry_at=None, updated_at=timezone.now())
                return True
            return False
        if event == "reauthorizationRequired":
            return _reauthorize(sub)
        if push_unwanted_reason(sub.calendar):
            mark_stopped(sub, "removed by the provider; push is not wanted for this calendar")
            return False
        repair(sub, gone=True)
        return True


def _reauthorize(sub: WebhookSubscription) -> bool:
    client = get_client(sub.calendar.calendar_account)
    try:
        client.reauthorize(sub.channel_id)
    except NotFound:
        repair(sub, gone=True)
        return True
    except AuthRevoked as exc:
        handle_auth_revoked(sub.calendar.calendar_account, exc)
        return False
    except ClientError:
        # Reauthorization refused: a renewal (PATCH) also re-authorizes the subscription.
        return _renew_graph(sub) is not sub
    except ProviderError as exc:
        record_failure(sub, exc)
        return True  # delivery may pause until it succeeds: catch up meanwhile
    if renewal_due(sub, timezone.now()):
        return _renew_graph(sub) is not sub
    return False
