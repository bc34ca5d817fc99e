"""The health document: the system's figures from recorded data, judged by the status rules;
one builder shared by the views and the health command.

``get_system_health()`` collects figures with a handful of indexed aggregate queries, then
applies the status rules table (``services/health_rules.py``). An empty table, a missing record
or a division by zero gives a sensible value (0, 100 %, or None for "no data"), never an
exception; a database that cannot be queried gives ``database_healthy: False`` and status
``critical`` with the database figures left empty.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone

from apps.calendars.models import Calendar, CalendarAccount
from apps.monitoring.models import ProviderApiCall
from apps.monitoring.services import jobs, rollups, slo
from apps.monitoring.services.health_rules import evaluate, recommend
from apps.webhooks.models import (
    FAILING_FAILURE_COUNT,
    SUBSCRIPTION_STATUSES,
    SubscriptionQuerySet,
    WebhookCounter,
    WebhookNotification,
    WebhookSubscription,
    WorkerHeartbeat,
)
from apps.webhooks.probes import probe_cache, probe_database
from apps.webhooks.services.subscriptions.flags import switch_state
from calendar_sync import sli

log = logging.getLogger(__name__)

# A subscription this young may still be in its creation handshake: not counted against health.
PENDING_GRACE = timedelta(minutes=15)
EXPECTED_ERROR_KINDS = sli.EXPECTED_ERROR_KINDS


def _pct(part: float, whole: float, empty: float | None = 100.0) -> float | None:
    return round(100.0 * part / whole, 1) if whole else empty


def _age(now: datetime, then: datetime | None) -> int | None:
    return None if then is None else max(0, int((now - then).total_seconds()))


class HealthDocument:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or timezone.now()
        self.thresholds = settings.HEALTH_THRESHOLDS

    def build(self) -> dict:
        infrastructure = {"database_healthy": True, **self._host_checks()}
        try:
            probe_database()
            metrics = {
                "subscriptions": self._subscriptions(),
                "notifications": self._notifications(),
                "api_performance": self._api_performance(),
                "calendars": self._calendars(),
                "infrastructure": {**infrastructure, **self._workers()},
                "rollout": self._rollout(),
                "jobs": jobs.last_runs(self.now),
            }
            slo_block = slo.slo_document(self.now)
        except DatabaseError as exc:
            # The class only: driver messages can carry host names and user names.
            log.error("health check: database unreachable (%s)", type(exc).__name__)
            infrastructure["database_healthy"] = False
            metrics = {"subscriptions": {}, "notifications": {}, "api_performance": {},
                       "calendars": {}, "infrastructure": infrastructure, "rollout": {}}
            slo_block = slo.unknown_document()
        status, alerts = evaluate(metrics, self.thresholds, slo.burn_alerts(slo_block))
        return {
            "timestamp": self.now.isoformat(),
            "status": status,
            "metrics": metrics,
            "slo": slo_block,
            "alerts": alerts,
            "recommendations": recommend(metrics, alerts),
        }

    # --- database figures ----------------------------------------------------------------

    def _subscriptions(self) -> dict:
        now = self.now
        soon = now + timedelta(seconds=self.thresholds["expiring_soon_seconds"])
        live = SubscriptionQuerySet.live_q(now)
        counts = WebhookSubscription.objects.aggregate(
            live_active=Count("id", filter=live),
            expiring_soon=Count("id", filter=live & Q(expires_at__lte=soon)),
            young_pending=Count("id", filter=Q(status=WebhookSubscription.Status.PENDING,
                                               created_at__gt=now - PENDING_GRACE)),
            failing=Count("id", filter=SubscriptionQuerySet.FAILING),
            failing_active=Count("id", filter=SubscriptionQuerySet.FAILING & Q(status="active")),
            **{s: Count("id", filter=Q(status=s)) for s in SUBSCRIPTION_STATUSES},
        )
        # Stopped subscriptions were ended on purpose (replaced, calendar removed): history.
        total = sum(counts[s] for s in SUBSCRIPTION_STATUSES) - counts["stopped"]
        # An "active" row past its expiry gets no more notifications: not counted as active.
        active, failed = counts["live_active"], counts["failing"]
        return {
            "total_subscriptions": total,
            "active_subscriptions": active,
            "expiring_soon": counts["expiring_soon"],
            "failed_subscriptions": failed,
            "failed_subscriptions_counts": (
                f"status failed or suspended, or any other status but stopped with "
                f"{FAILING_FAILURE_COUNT}+ consecutive failures"),
            "failing_active_subscriptions": counts["failing_active"],
            "inactive_subscriptions": total - active - counts["failed"] - counts["suspended"],
            "health_percentage": _pct(active, total - counts["young_pending"]),
            "by_status": {s: counts[s] for s in SUBSCRIPTION_STATUSES},
        }

    def _notifications(self) -> dict:
        now, t = self.now, self.thresholds
        hour_start = (now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
        # The day's figures from the hourly rollups (24 rows per provider, whatever the traffic).
        day = dict.fromkeys(("notifications_received", "notifications_ok", "notifications_failed",
                             "processing_ms_sum", "processing_count"), 0)
        for row in rollups.hour_rows(hour_start).values():
            for key in day:
                day[key] += row[key]
        ok, failed = day["notifications_ok"], day["notifications_failed"]
        old_before = now - timedelta(seconds=t["old_pending_age_seconds"])
        waiting = WebhookNotification.objects.waiting().aggregate(
            count=Count("id"), old=Count("id", filter=Q(received_at__lt=old_before)),
            oldest=Min("received_at"),
        )
        counters = dict(
            WebhookCounter.objects.filter(bucket__gte=hour_start)
            .values("kind").annotate(n=Sum("count")).values_list("kind", "n")
        )
        count = day["processing_count"]
        return {
            "total_notifications_24h": day["notifications_received"],
            "success_rate_percentage": _pct(ok, ok + failed),
            "success_rate_window_seconds": 24 * 3600,
            "failed_notifications_24h": failed,
            "pending_notifications": waiting["count"],
            "old_pending_notifications": waiting["old"],
            "oldest_pending_age_seconds": _age(now, waiting["oldest"]),
            "average_processing_time_ms": (round(day["processing_ms_sum"] / count, 1)
                                           if count else None),
            "rejected_notifications_24h": counters.get("rejected", 0),
            "not_stored_24h": counters,
        }

    def _api_performance(self) -> dict:
        rows = (
            ProviderApiCall.objects.filter(created_at__gte=self.now - timedelta(hours=1))
            .values("provider", "error_kind")
            .annotate(n=Count("id"), ms=Sum("duration_ms"))
        )
        calls: dict[str, int] = {}
        errors: dict[str, int] = {}
        total_ms = 0
        for row in rows:
            provider, n = row["provider"], row["n"]
            calls[provider] = calls.get(provider, 0) + n
            total_ms += row["ms"] or 0
            if row["error_kind"] and row["error_kind"] not in EXPECTED_ERROR_KINDS:
                errors[provider] = errors.get(provider, 0) + n
        quota = settings.PROVIDER_HOURLY_QUOTA
        usage = {p: _pct(n, quota.get(p, 0), empty=None) for p, n in calls.items()}
        total_calls, total_errors = sum(calls.values()), sum(errors.values())
        return {
            "api_calls_last_hour": total_calls,
            "api_errors_last_hour": total_errors,
            "api_error_rate_percentage": _pct(total_errors, total_calls, empty=0.0),
            "average_api_response_time_ms": (round(total_ms / total_calls, 1)
                                             if total_calls else None),
            # The provider closest to its hourly quota decides.
            "api_quota_usage_percentage": max((u for u in usage.values() if u is not None),
                                              default=0.0),
            "by_provider": {p: {"calls": n, "errors": errors.get(p, 0),
                                "quota_usage_percentage": usage[p]} for p, n in calls.items()},
        }

    def _calendars(self) -> dict:
        stale_before = self.now - timedelta(seconds=settings.POLL_STALENESS_SECONDS)
        agg = Calendar.objects.filter(sync_enabled=True).aggregate(
            total=Count("id"),
            stale=Count("id", filter=Q(last_synced_at__lt=stale_before)
                        | Q(last_synced_at__isnull=True, created_at__lt=stale_before)),
            fallback=Count("id", filter=Q(fallback_polling_enabled=True)),
        )
        reauth = CalendarAccount.objects.filter(
            status=CalendarAccount.Status.REAUTH_REQUIRED).count()
        return {
            "sync_enabled_calendars": agg["total"],
            "calendars_behind_staleness_limit": agg["stale"],
            "calendars_on_fallback_polling": agg["fallback"],
            "accounts_reauth_required": reauth,
        }

    def _rollout(self) -> dict:
        """The phase, the deploy-time setting and the runtime kill switch, side by side."""
        state = switch_state()
        return {
            "deployment_phase": settings.WEBHOOK_DEPLOYMENT_PHASE or None,
            "webhooks_enabled_setting": state.deploy_enabled,
            "kill_switch": "unset" if state.override is None else
                           ("on" if state.override else "off"),
            "kill_switch_changed_by": state.updated_by,
            "kill_switch_changed_at": state.updated_at.isoformat() if state.updated_at else None,
            "push_enabled": state.effective,
            "early_adopters": len(settings.WEBHOOK_EARLY_ADOPTERS),
            "rollout_percentage": settings.WEBHOOK_ROLLOUT_PERCENTAGE,
            "user_rollout_percentage": settings.WEBHOOK_USER_ROLLOUT_PERCENTAGE,
        }

    def _workers(self) -> dict:
        fresh_after = self.now - timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_SECONDS)
        agg = WorkerHeartbeat.objects.aggregate(
            latest=Max("last_seen_at", filter=Q(stopped_at__isnull=True)),
            alive=Count("id", filter=Q(stopped_at__isnull=True, last_seen_at__gte=fresh_after)),
            # A worker that shut down cleanly: "stopped at 13:05", not "never seen".
            stopped=Max("stopped_at"),
        )
        return {
            "workers_alive": agg["alive"],
            "worker_heartbeat_age_seconds": _age(self.now, agg["latest"]),
            "last_worker_stopped_at": agg["stopped"].isoformat() if agg["stopped"] else None,
            "hosts_lost": self._hosts_lost(fresh_after),
        }

    def _hosts_lost(self, fresh_after: datetime) -> list[str]:
        """Hosts whose worker died (no clean stop) within the hour and has not come back
        there: the cluster runs short of a host even while other workers are alive. After an
        hour it is history (a container replaced after a crash never comes back by name)."""
        running = WorkerHeartbeat.objects.filter(stopped_at__isnull=True)
        alive = running.filter(last_seen_at__gte=fresh_after).values("hostname")
        dead = running.filter(last_seen_at__lt=fresh_after,
                              last_seen_at__gte=self.now - timedelta(hours=1))
        return sorted(set(dead.exclude(hostname__in=alive).values_list("hostname", flat=True)))

    # --- host figures (no database) ------------------------------------------------------

    def _host_checks(self) -> dict:
        disk_free = _disk_free_fraction()
        memory = _memory_available_fraction()
        t = self.thresholds
        return {
            "cache_healthy": _cache_works(),
            "disk_free_fraction": disk_free,
            "disk_space_ok": disk_free is None or disk_free >= t["disk_free_min_fraction"],
            "memory_available_fraction": memory,
            "memory_usage_ok": memory is None or memory >= t["memory_available_min_fraction"],
        }


def _cache_works() -> bool:
    try:
        probe_cache()
    except Exception:  # noqa: BLE001 - any cache backend error means "cache down"
        return False
    return True


def _disk_free_fraction() -> float | None:
    path = Path(settings.VAR_DIR)
    try:
        usage = shutil.disk_usage(path if path.exists() else settings.BASE_DIR)
    except OSError:
        return None
    return round(usage.free / usage.total, 3) if usage.total else None


def _memory_available_fraction() -> float | None:
    """MemAvailable / MemTotal from /proc/meminfo (Linux); None where it cannot be read."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines()
        )
        total = int(fields["MemTotal"].split()[0])
        available = int(fields["MemAvailable"].split()[0])
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return round(available / total, 3) if total else None


def get_system_health(now: datetime | None = None) -> dict:
    return HealthDocument(now).build()


def urgent_reason(now: datetime | None = None) -> str | None:
    """A critical condition that should not wait for the next scheduled check, looked for with
    a few indexed queries on every cron call (every minute).

    A dead worker only shows after WORKER_HEARTBEAT_STALE_SECONDS and an SLO's fast burn
    after some requests or changes have gone bad: adding a 5-minute check interval on top of
    either would break the promise of an alert within 5 minutes. Both use the full check's own
    definitions, so the check this triggers reports the same condition.
    """
    now = now or timezone.now()
    fresh_after = now - timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_SECONDS)
    alive = WorkerHeartbeat.objects.filter(stopped_at__isnull=True,
                                           last_seen_at__gte=fresh_after).exists()
    if not alive and WebhookNotification.objects.waiting().exists():
        return "no live worker while notifications wait"
    return slo.fast_burn_reason(now)
