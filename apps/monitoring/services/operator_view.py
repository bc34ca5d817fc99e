"""The dashboard's lists for the operator woken at 3 a.m.: what is broken, who must act, what
the system is doing about it. Each row links to its admin page; each list says how many rows
there are beyond the ones shown.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.calendars.models import Calendar, CalendarAccount
from apps.monitoring.models import HealthSnapshot, Incident
from apps.monitoring.services.alert_content import admin_path
from apps.monitoring.services.dashboard import incident_summary
from apps.webhooks.models import WebhookSubscription

LIST_LIMIT = 50
RESOLVED_DAYS = 7


def failing_subscriptions(limit: int = LIST_LIMIT) -> dict:
    rows = (WebhookSubscription.objects.failing()
            .select_related("calendar__calendar_account")
            .order_by("status", "-failure_count", "-updated_at"))
    return {"total": rows.count(), "rows": [{
        "status": s.status, "provider": s.provider, "failure_count": s.failure_count,
        "last_error": s.last_error, "updated_at": s.updated_at, "url": admin_path(s),
        "calendar": s.calendar.name or s.calendar.provider_calendar_id,
        "calendar_url": admin_path(s.calendar),
        "account": s.calendar.calendar_account.email,
        "account_url": admin_path(s.calendar.calendar_account),
    } for s in rows[:limit]]}


def reauth_accounts(limit: int = LIST_LIMIT) -> dict:
    rows = (CalendarAccount.objects.filter(status=CalendarAccount.Status.REAUTH_REQUIRED)
            .select_related("user").order_by("-updated_at"))
    return {"total": rows.count(), "rows": [{
        "email": a.email, "provider": a.provider, "user": a.user.get_username(),
        "last_error": a.last_error, "since": a.updated_at, "url": admin_path(a),
    } for a in rows[:limit]]}


def _incident_row(incident: Incident) -> dict:
    return {**incident_summary(incident), "url": admin_path(incident)}


def incidents(now: datetime | None = None) -> dict:
    """Open incidents (critical first) and those resolved in the last RESOLVED_DAYS."""
    now = now or timezone.now()
    open_rows = Incident.objects.open().order_by("-level", "opened_at")
    resolved = (Incident.objects.filter(resolved_at__gte=now - timedelta(days=RESOLVED_DAYS))
                .order_by("-resolved_at"))
    return {"open": [_incident_row(i) for i in open_rows],
            "resolved": [_incident_row(i) for i in resolved[:LIST_LIMIT]],
            "resolved_total": resolved.count(), "days": RESOLVED_DAYS}


def quota_usage(health: dict) -> list[dict]:
    """Each provider's calls in the last hour against its hourly quota."""
    by_provider = (health["metrics"].get("api_performance") or {}).get("by_provider", {})
    rows = []
    for provider, quota in settings.PROVIDER_HOURLY_QUOTA.items():
        calls = by_provider.get(provider, {}).get("calls", 0)
        rows.append({"provider": provider, "calls": calls, "quota": quota,
                     "percentage": round(100.0 * calls / quota, 1) if quota else None})
    return rows


def fallback_calendars(limit: int = LIST_LIMIT) -> dict:
    rows = (Calendar.objects.filter(sync_enabled=True, fallback_polling_enabled=True)
            .select_related("calendar_account", "auto_fallback")
            .order_by("calendar_account__email", "name"))
    result = []
    for c in rows[:limit]:
        # The reverse one-to-one raises when absent: hasattr is the documented test.
        auto = c.auto_fallback if hasattr(c, "auto_fallback") else None
        result.append({
            "calendar": c.name or c.provider_calendar_id, "url": admin_path(c),
            "account": c.calendar_account.email,
            "reason": f"health monitor: {auto.reason}" if auto else "set by an operator",
            "last_synced_at": c.last_synced_at, "last_sync_error": c.last_sync_error,
        })
    return {"total": rows.count(), "rows": result}


def last_check() -> dict | None:
    """The last recorded health check, with what happened to its alert deliveries."""
    snapshot = (HealthSnapshot.objects.order_by("-created_at")
                .values("created_at", "status", "document").first())
    if snapshot is None:
        return None
    return {"at": snapshot["created_at"], "status": snapshot["status"],
            "alert_delivery": (snapshot["document"] or {}).get("alert_delivery")}


def last_undelivered_check(now: datetime | None = None) -> datetime | None:
    """When a check last failed to deliver every alert it had to send (within a day)."""
    now = now or timezone.now()
    row = (HealthSnapshot.objects
           .filter(Q(created_at__gte=now - timedelta(days=1)),
                   document__alert_delivery__all_failed=True)
           .order_by("-created_at").values_list("created_at", flat=True).first())
    return row


def sections(health: dict) -> dict:
    return {
        "failing_subscriptions": failing_subscriptions(),
        "reauth_accounts": reauth_accounts(),
        "incidents": incidents(),
        "quota": quota_usage(health),
        "fallback": fallback_calendars(),
        "last_check": last_check(),
        "undelivered_at": last_undelivered_check(),
        "rollout": health["metrics"].get("rollout") or {},
    }
