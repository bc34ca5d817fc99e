"""What an alert tells the person who reads it: durations in words, the objects concerned
(named, with admin links), what to do, where it happened, and what recovered.

Figures stay in seconds in the health document; only the words people read are humanised.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.calendars.models import CalendarAccount
from apps.webhooks.models import WebhookNotification, WebhookSubscription, WorkerHeartbeat

AFFECTED_LIMIT = 10


def human_duration(seconds: float | None) -> str:
    """``2399`` → ``"40 min"``; ``90000`` → ``"1 d 1 h"``."""
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def clock(at: datetime) -> str:
    """A time of day the reader can match with the logs (UTC, the service's time zone)."""
    return f"{at:%H:%M}" if at.date() == timezone.now().date() else f"{at:%Y-%m-%d %H:%M}"


def where() -> dict:
    return {"environment": settings.ALERT_ENVIRONMENT, "host": socket.gethostname()}


def admin_path(obj) -> str:
    """The object's change page in the admin ('' when its model is not in the admin)."""
    meta = obj._meta
    try:
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return ""


def admin_url(obj) -> str:
    path = admin_path(obj)
    return f"{settings.WEBHOOK_BASE_URL}{path}" if path else ""


def _item(name: str, obj) -> dict:
    return {"name": name[:200], "url": admin_url(obj)}


def _failing_subscriptions() -> tuple[int, list[dict]]:
    rows = (WebhookSubscription.objects.failing().select_related("calendar__calendar_account")
            .order_by("-failure_count", "-updated_at"))
    items = [_item(f"{s.calendar.name} ({s.calendar.calendar_account.email}) — {s.status}, "
                   f"{s.failure_count} failures: {s.last_error or 'no error recorded'}", s)
             for s in rows[:AFFECTED_LIMIT]]
    return rows.count(), items


def _reauth_accounts() -> tuple[int, list[dict]]:
    rows = (CalendarAccount.objects.filter(status=CalendarAccount.Status.REAUTH_REQUIRED)
            .order_by("email"))
    return rows.count(), [_item(f"{a.email} ({a.provider})", a) for a in rows[:AFFECTED_LIMIT]]


def _waiting_notifications() -> tuple[int, list[dict]]:
    rows = (WebhookNotification.objects.waiting()
            .select_related("subscription__calendar").order_by("received_at"))
    return rows.count(), [
        _item(f"{n.provider} notification for {n.subscription.calendar.name}, received "
              f"{n.received_at:%Y-%m-%d %H:%M} UTC", n) for n in rows[:AFFECTED_LIMIT]]


def _failed_notifications() -> tuple[int, list[dict]]:
    rows = (WebhookNotification.objects.filter(
        processing_status=WebhookNotification.Status.FAILED)
            .select_related("subscription__calendar").order_by("-received_at"))
    return rows.count(), [
        _item(f"{n.subscription.calendar.name}: {(n.error or 'no error recorded')[:120]}", n)
        for n in rows[:AFFECTED_LIMIT]]


def _workers() -> tuple[int, list[dict]]:
    rows = WorkerHeartbeat.objects.order_by("-last_seen_at")
    return rows.count(), [
        _item(f"{w.worker_id} on {w.hostname or '?'}: "
              + (f"stopped at {w.stopped_at:%Y-%m-%d %H:%M}" if w.stopped_at
                 else f"last seen {w.last_seen_at:%Y-%m-%d %H:%M}") + " UTC", w)
        for w in rows[:AFFECTED_LIMIT]]


AFFECTED: dict[str, Callable[[], tuple[int, list[dict]]]] = {
    "failed_subscriptions": _failing_subscriptions,
    "subscription_health": _failing_subscriptions,
    "accounts_reauth_required": _reauth_accounts,
    "notification_backlog": _waiting_notifications,
    "worker_stale": _waiting_notifications,
    "notification_success_rate": _failed_notifications,
}


def affected(key: str) -> dict:
    """Up to AFFECTED_LIMIT objects behind an alert, and how many there are in all."""
    finder = AFFECTED.get(key) or (_workers if key.startswith("worker") else None)
    if finder is None:
        return {"total": 0, "items": []}
    total, items = finder()
    return {"total": total, "items": items}


# What a resolved message says came back (instead of repeating the old problem).
RECOVERED = {
    "database_down": "The database answers again.",
    "cache_down": "The cache (Redis) answers again.",
    "subscription_health": "Push subscriptions are back above the health threshold.",
    "failed_subscriptions": "Failing push subscriptions are back within the threshold.",
    "notification_success_rate": "Notifications are processed successfully again.",
    "notification_backlog": "The notification backlog has drained.",
    "worker_stale": "A notification worker is heartbeating again.",
    "worker_host_lost": "The lost host's worker is back, or its record has aged out.",
    "scheduler_stale": "Health checks run again: a scheduler is back.",
    "slo_availability": "The availability error budget is no longer burning fast.",
    "slo_freshness": "The freshness error budget is no longer burning fast.",
    "accounts_reauth_required": "No account needs re-authorization any more.",
    "provider_api_errors": "Provider API errors are back to normal.",
    "disk_space_low": "Disk space is back above the limit.",
    "memory_low": "Available memory is back above the limit.",
    "kill_switch_off": "Push notifications are switched on again.",
    "rollout_phase_mismatch": "The rollout settings agree again.",
}


def recovered(key: str, title: str) -> str:
    return RECOVERED.get(key, f"No longer reported: {title}.")
