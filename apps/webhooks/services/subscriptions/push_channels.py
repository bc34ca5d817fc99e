"""The building blocks of the subscription manager: opening, stopping and failing one channel.

A "channel" is a Google push channel or a Graph subscription; both are ``WebhookSubscription``
rows. The row always exists (and is committed) before the provider is asked to watch, so a
notification that arrives before the provider's answer (Google's ``sync``) finds it.

Work on one calendar's channels is serialised across processes by ``calendar_lock`` (a
PostgreSQL session advisory lock; SQLite, the single-process embedded default, needs none).
Provider calls go through ``get_client(account)`` and its typed errors; error texts stored in
``last_error`` are the client's (which never carry a secret) with the channel secret redacted
for good measure.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from apps.calendars.models import Calendar, CalendarAccount
from apps.calendars.providers.clients import get_client
from apps.calendars.providers.errors import AuthRevoked, NotFound, ProviderError
from apps.calendars.services.accounts import mark_reauth_required
from apps.webhooks.models import SubscriptionQuerySet, WebhookSubscription
from calendar_sync.locks import advisory_lock

log = logging.getLogger(__name__)

Status = WebhookSubscription.Status
# A row that holds a calendar's retry state (failure count, backoff) until it is repaired.
REPAIRABLE = (Status.FAILED, Status.EXPIRED, Status.SUSPENDED)
# Accepting (the provider may still be delivering for it) or repairable.
OPEN = (*SubscriptionQuerySet.ACCEPTING, *REPAIRABLE)

# The advisory lock namespace of channel work, apart from the sync engine's.
LOCK_NAMESPACE = 0x5C5B
# How long a public entry point waits for a calendar another process is working on.
LOCK_WAIT_SECONDS = 5.0
_UPDATE = ["channel_id", "provider", "status", "resource_id", "resource_uri", "expires_at",
           "renew_at", "next_retry_at", "failure_count", "last_error", "token_digest",
           "stopped_at", "replaced_by", "updated_at"]


class CalendarBusy(Exception):
    """Another process is working on this calendar's subscriptions right now."""


# --- addresses and times -----------------------------------------------------------------------
def notification_address(provider: str) -> str:
    return f"{settings.WEBHOOK_BASE_URL}/webhooks/{provider}/"


def lifecycle_address(provider: str) -> str:
    return f"{settings.WEBHOOK_BASE_URL}/webhooks/microsoft/lifecycle/" if provider == "microsoft" \
        else ""


def requested_expiry(provider: str, now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    if provider == "google":
        return now + timedelta(seconds=settings.WEBHOOK_GOOGLE_CHANNEL_TTL_SECONDS)
    return now + timedelta(minutes=settings.WEBHOOK_GRAPH_SUBSCRIPTION_MINUTES)


def _spread(key: str) -> float:
    """A stable number in [0, 1) per channel: its renewal jitter."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def renewal_time(channel_id: str, expires_at: datetime, now: datetime) -> datetime:
    """Renew when less than the configured share of the lifetime is left, minus a per-channel
    jitter so that channels created together do not all renew in the same run."""
    lifetime = expires_at - now
    margin = lifetime * settings.WEBHOOK_RENEW_REMAINING_FRACTION
    jitter = lifetime * (settings.WEBHOOK_RENEW_JITTER_FRACTION * _spread(channel_id))
    return max(now, expires_at - margin - jitter)


def renewal_due(sub: WebhookSubscription, now: datetime) -> bool:
    if sub.renew_at is not None:
        return sub.renew_at <= now
    if sub.expires_at is None:
        return True
    started = sub.created_at if sub.created_at < sub.expires_at else now
    return now >= renewal_time(sub.channel_id, sub.expires_at, started)


def retry_due(sub: WebhookSubscription, now: datetime) -> bool:
    return sub.next_retry_at is None or sub.next_retry_at <= now


def backoff_seconds(failures: int, retry_after: float | None = None) -> float:
    base = settings.WEBHOOK_REPAIR_BACKOFF_BASE_SECONDS
    delay = min(base * 2 ** max(0, failures - 1), settings.WEBHOOK_REPAIR_BACKOFF_MAX_SECONDS)
    return max(delay, retry_after or 0.0)


# --- locking -----------------------------------------------------------------------------------
def calendar_lock(calendar_id: int, wait: float = 0.0) -> AbstractContextManager[bool]:
    """Yields True when this process may work on the calendar's channels (reentrant, so the
    maintenance pass can call the public entry points that take it too)."""
    return advisory_lock(LOCK_NAMESPACE, calendar_id, wait=wait)


# --- failures ----------------------------------------------------------------------------------
def describe_error(exc: BaseException, secret: str = "") -> str:
    text = str(exc)
    if secret:
        text = text.replace(secret, "[redacted]")
    kind = getattr(exc, "kind", type(exc).__name__)
    status = getattr(exc, "status_code", None)
    return f"{kind}{f' (HTTP {status})' if status else ''}: {text}"[:500]


def record_failure(sub: WebhookSubscription, exc: BaseException, secret: str = "") -> None:
    """Count one more consecutive failure, schedule the retry, suspend at the limit.

    An active channel whose renewal failed stays active (it still works until it expires);
    anything else becomes ``failed``. A suspended calendar is polled: the polling policy
    (``polling_policy.PushCoverage``) counts only an active, unexpired channel as coverage, so
    no calendar flag is touched here (``fallback_polling_enabled`` is the operators' own).
    """
    now = timezone.now()
    sub.failure_count += 1
    sub.last_error = describe_error(exc, secret)
    delay = backoff_seconds(sub.failure_count, getattr(exc, "retry_after", None))
    if sub.failure_count >= settings.WEBHOOK_MAX_SUBSCRIPTION_FAILURES:
        sub.status = Status.SUSPENDED
        # Suspended channels are still probed, rarely, so that a fixed fault recovers by itself.
        delay = max(delay, settings.WEBHOOK_REPAIR_BACKOFF_MAX_SECONDS)
        log.warning("subscription %s suspended after %s failures; calendar %s is polled "
                    "until it recovers", sub.pk, sub.failure_count, sub.calendar_id)
    elif sub.status != Status.ACTIVE:
        sub.status = Status.FAILED
    sub.next_retry_at = now + timedelta(seconds=delay)
    sub.save(update_fields=["failure_count", "last_error", "status", "next_retry_at",
                            "updated_at"])
    log.info("subscription %s failed (%s), retry after %s", sub.pk, sub.last_error,
             sub.next_retry_at)


def handle_auth_revoked(account: CalendarAccount, error: AuthRevoked) -> None:
    """The grant is dead (invalid_grant, or a fresh token refused): the user must reconnect.

    No provider call can succeed, so the account's channels are stopped locally (they lapse at
    the provider) and its calendars carry the reason in ``last_sync_error``. Nothing polls them
    either (the revoked token cannot be used): polling and push both resume on their own once
    the account is reconnected and ``active`` again. The account's status is what the monitor
    alerts on.
    """
    now = timezone.now()
    reason = "authorization revoked: the account must be reconnected"
    # An account already marked keeps its first reason; a disabled one stays so.
    mark_reauth_required(account, f"{error.kind}: {error}", only_if_active=True)
    account.refresh_from_db(fields=["status", "last_error"])
    stopped = WebhookSubscription.objects.filter(
        calendar__calendar_account=account, status__in=OPEN
    ).update(status=Status.STOPPED, stopped_at=now, next_retry_at=None, updated_at=now,
             last_error=f"stopped locally: {reason}")
    Calendar.objects.filter(calendar_account=account).update(last_sync_error=reason)
    log.warning("account %s needs re-authorization; %s subscriptions stopped locally",
                account.pk, stopped)


# --- opening and stopping ----------------------------------------------------------------------
def _prepare(sub: WebhookSubscription) -> str:
    """Give the row a fresh id and secret, mark it pending and commit it; return the secret."""
    provider = sub.calendar.calendar_account.provider
    sub.provider = provider
    # Graph assigns the id: a unique placeholder until it answers.
    sub.channel_id = str(uuid.uuid4()) if provider == "google" else f"pending:{uuid.uuid4()}"
    token = sub.issue_token()
    sub.status = Status.PENDING
    sub.resource_id = sub.resource_uri = ""
    sub.expires_at = sub.renew_at = sub.next_retry_at = sub.stopped_at = None
    if sub.pk is None:
        sub.created_at = timezone.now()
        sub.save()
    else:
        sub.save(update_fields=_UPDATE)
    return token


def open_channel(sub: WebhookSubscription) -> None:
    """Create the provider channel for a prepared-or-new row. Raises ``ProviderError`` (its
    text free of the secret); the row is then left ``pending`` for the caller to fail."""
    token = _prepare(sub)
    calendar = sub.calendar
    try:
        result = get_client(calendar.calendar_account).watch(
            calendar, channel_id=sub.channel_id, token=token,
            address=notification_address(sub.provider),
            lifecycle_address=lifecycle_address(sub.provider),
            expires_at=requested_expiry(sub.provider),
        )
    except ProviderError as exc:
        exc.args = (str(exc).replace(token, "[redacted]"),)  # whoever records it
        raise
    now = timezone.now()
    sub.channel_id = result.channel_id
    sub.resource_id = result.resource_id
    sub.resource_uri = result.resource_uri
    sub.expires_at = result.expires_at
    sub.renew_at = renewal_time(result.channel_id, result.expires_at, now)
    sub.status = Status.ACTIVE
    sub.failure_count = 0
    sub.last_error = ""
    sub.next_retry_at = None
    # Only our fields: the receiver may have recorded the first notification meanwhile.
    sub.save(update_fields=_UPDATE)
    log.info("subscription %s active for calendar %s until %s", sub.pk, calendar.pk,
             sub.expires_at)


def channel_failed(sub: WebhookSubscription, exc: ProviderError) -> None:
    """A provider call for this channel failed: a revoked grant stops the whole account (the
    row is re-read), anything else is one more failure on the row."""
    if isinstance(exc, AuthRevoked):
        handle_auth_revoked(sub.calendar.calendar_account, exc)
        sub.refresh_from_db()
    else:
        record_failure(sub, exc)


def establish(sub: WebhookSubscription) -> bool:
    """``open_channel`` with its failure recorded on the row. True when active."""
    try:
        open_channel(sub)
    except ProviderError as exc:
        channel_failed(sub, exc)
        return False
    return True


def may_be_live(sub: WebhookSubscription, now: datetime) -> bool:
    """Whether the provider may still deliver for this row (so stopping it needs a call)."""
    known = bool(sub.resource_id) and not sub.channel_id.startswith("pending:")
    return known and sub.expires_at is not None and sub.expires_at > now


def mark_stopped(sub: WebhookSubscription, note: str) -> None:
    sub.status = Status.STOPPED
    sub.stopped_at = timezone.now()
    sub.next_retry_at = None
    sub.last_error = note[:500]
    sub.save(update_fields=["status", "stopped_at", "next_retry_at", "last_error",
                            "updated_at"])


def stop_channel(sub: WebhookSubscription, reason: str) -> bool:
    """Stop at the provider (when it may be live), then locally. False when the provider call
    failed and will be retried; after too many failures the channel is left to expire."""
    if sub.status == Status.STOPPED:
        return True
    account = sub.calendar.calendar_account
    # The client makes no call for an account that is not active (disconnected or revoked):
    # its channels are left to lapse, and the receivers ignore stopped ones meanwhile.
    if account.status == CalendarAccount.Status.ACTIVE and may_be_live(sub, timezone.now()):
        try:
            get_client(account).stop(sub.channel_id, sub.resource_id)
        except NotFound:
            pass  # already gone at the provider
        except AuthRevoked as exc:
            handle_auth_revoked(account, exc)
            sub.refresh_from_db()
            return True
        except ProviderError as exc:
            return _stop_failed(sub, exc, reason)
    mark_stopped(sub, f"stopped: {reason}")
    log.info("subscription %s stopped (%s)", sub.pk, reason)
    return True


def _stop_failed(sub: WebhookSubscription, exc: ProviderError, reason: str) -> bool:
    sub.failure_count += 1
    if sub.failure_count >= settings.WEBHOOK_MAX_SUBSCRIPTION_FAILURES:
        mark_stopped(sub, f"stopped: {reason}; the provider refused to stop it, left to expire "
                          f"({describe_error(exc)})")
        return True
    sub.last_error = f"stopping ({reason}) failed: {describe_error(exc)}"[:500]
    sub.next_retry_at = timezone.now() + timedelta(
        seconds=backoff_seconds(sub.failure_count, exc.retry_after))
    sub.save(update_fields=["failure_count", "last_error", "next_retry_at", "updated_at"])
    return False
