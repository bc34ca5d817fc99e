"""The dashboard document: recent activity, 24 h hourly series, subscription distribution,
and the page's lists (subscriptions expiring soon, slowest calendars).

Everything is read from recorded rows; an hour with no data is ``None`` in a rate or average
series and 0 in a count series, so charts show gaps instead of invented values.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from apps.monitoring.models import HealthSnapshot, Incident
from apps.monitoring.services import rollups
from apps.webhooks.models import SUBSCRIPTION_STATUSES, WebhookNotification, WebhookSubscription


def hour_slots(now: datetime) -> list[datetime]:
    """The 24 hour buckets ending with the current (partial) hour, oldest first."""
    current = now.replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=23 - i) for i in range(24)]


def performance_trends(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    slots = hour_slots(now)
    start = slots[0]
    notes = rollups.hour_rows(start)
    lags = rollups.lag_percentiles(start)
    # The last snapshot of each hour (the check runs every 2-5 minutes: at most ~720 rows).
    snapshots: dict[datetime, tuple[int, int, int]] = {}
    for created, active, total, failed in (
        HealthSnapshot.objects.filter(created_at__gte=start).order_by("created_at")
        .values_list("created_at", "active_subscriptions", "total_subscriptions",
                     "failed_subscriptions")
    ):
        snapshots[created.replace(minute=0, second=0, microsecond=0)] = (active, total, failed)

    def series(rows: dict, pick, empty=None) -> list:
        return [pick(rows[s]) if s in rows else empty for s in slots]

    def rate(row: dict) -> float | None:
        finished = row["notifications_ok"] + row["notifications_failed"]
        return round(100.0 * row["notifications_ok"] / finished, 1) if finished else None

    def average_ms(row: dict) -> float | None:
        count = row["processing_count"]
        return round(row["processing_ms_sum"] / count, 1) if count else None

    def api_ms(row: dict) -> float | None:
        return round(row["api_ms_sum"] / row["api_calls"], 1) if row["api_calls"] else None

    trends = {
        "hours": [s.isoformat() for s in slots],
        "notifications": series(notes, lambda r: r["notifications_received"], 0),
        "failed_notifications": series(notes, lambda r: r["notifications_failed"], 0),
        "success_rate": series(notes, rate),
        "average_processing_time_ms": series(notes, average_ms),
        "api_calls": series(notes, lambda r: r["api_calls"], 0),
        "api_errors": series(notes, lambda r: r["api_errors"], 0),
        "average_api_response_time_ms": series(notes, api_ms),
        "active_subscriptions": series(snapshots, lambda r: r[0]),
        "total_subscriptions": series(snapshots, lambda r: r[1]),
        "failed_subscriptions": series(snapshots, lambda r: r[2]),
        **{f"change_lag_{q}_seconds": series(lags, lambda r, q=q: r[q])
           for q in ("p50", "p95", "p99")},
    }
    # The first dashboard document's names, kept for clients written against it.
    trends["success_rate_24h"] = trends["success_rate"]
    trends["processing_time_24h"] = trends["average_processing_time_ms"]
    trends["subscription_count_24h"] = trends["total_subscriptions"]
    return trends


def subscription_distribution() -> dict:
    by_status = dict.fromkeys(SUBSCRIPTION_STATUSES, 0)
    by_provider: dict[str, int] = {}
    matrix: dict[str, dict[str, int]] = {}
    for row in WebhookSubscription.objects.values("provider", "status").annotate(n=Count("id")):
        provider, status, n = row["provider"], row["status"], row["n"]
        by_status[status] = by_status.get(status, 0) + n
        by_provider[provider] = by_provider.get(provider, 0) + n
        matrix.setdefault(provider, dict.fromkeys(SUBSCRIPTION_STATUSES, 0))[status] = n
    return {"by_provider": by_provider, "by_status": by_status,
            "by_provider_and_status": matrix}


def incident_summary(incident: Incident) -> dict:
    return {"key": incident.key, "level": incident.level, "title": incident.title,
            "message": incident.message, "opened_at": incident.opened_at,
            "last_notified_at": incident.last_notified_at,
            "resolved_at": incident.resolved_at}


def recent_activity(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    # From the minute rollups (received per provider, finished by outcome in the last hour)
    # and what waits now: at most a few hundred rows whatever the traffic.
    hour = rollups.minute_sums(now - timedelta(minutes=59))
    by_provider = {p: row["notifications_received"] for p, row in hour.items()
                   if row["notifications_received"]}
    by_status = {"completed": sum(r["notifications_ok"] for r in hour.values()),
                 "failed": sum(r["notifications_failed"] for r in hour.values()),
                 **dict(WebhookNotification.objects.waiting()
                        .values("processing_status").annotate(n=Count("id"))
                        .values_list("processing_status", "n"))}
    # Never headers or payloads: they carry channel tokens and clientState.
    latest = (WebhookNotification.objects.order_by("-received_at")
              .values("received_at", "provider", "kind", "resource_state",
                      "processing_status", "processing_time_ms", "attempts",
                      "subscription__calendar__name")[:10])
    incidents = Incident.objects.order_by("-opened_at")[:10]
    return {
        "notifications_last_hour": {"total": sum(by_provider.values()),
                                    "by_status": by_status, "by_provider": by_provider},
        "last_notification_at": latest[0]["received_at"] if latest else None,
        "recent_notifications": [
            {**{k: v for k, v in row.items() if k != "subscription__calendar__name"},
             "calendar": row["subscription__calendar__name"]} for row in latest
        ],
        "recent_incidents": [incident_summary(i) for i in incidents],
    }


def expiring_soon(now: datetime | None = None, limit: int = 20) -> list[dict]:
    now = now or timezone.now()
    soon = now + timedelta(seconds=settings.HEALTH_THRESHOLDS["expiring_soon_seconds"])
    rows = (WebhookSubscription.objects.live(now).filter(expires_at__lte=soon)
            .order_by("expires_at")
            .values("provider", "expires_at", "failure_count", "calendar__name",
                    "calendar__calendar_account__email")[:limit])
    return [{"provider": r["provider"], "expires_at": r["expires_at"],
             "expires_in_hours": round((r["expires_at"] - now).total_seconds() / 3600, 1),
             "failure_count": r["failure_count"], "calendar": r["calendar__name"],
             "account": r["calendar__calendar_account__email"]} for r in rows]




def dashboard_document(health: dict) -> dict:
    return {
        "health": health,
        "recent_activity": recent_activity(),
        "performance_trends": performance_trends(),
        "subscription_distribution": subscription_distribution(),
        "status_history": rollups.status_history(),
    }
