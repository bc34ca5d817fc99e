"""The status rules table, the alerts it raises and the recommendations that go with them.

Pure functions of the collected figures and ``settings.HEALTH_THRESHOLDS``:

| status   | any of                                                                          |
|----------|---------------------------------------------------------------------------------|
| critical | database down; subscription health < 80 %; an SLO pages (fast burn); > 20       |
|          | notifications pending over 5 min; > 10 failing subscriptions; no live worker    |
|          | while some wait                                                                 |
| degraded | subscription health 80-94 %; an SLO warns (slow burn); 6-20 old pending; 6-10   |
|          | failing subscriptions; cache down; kill switch off; rollout settings conflict   |
| healthy  | none of the above                                                               |

A failing subscription is failed, suspended, or any other non-stopped one with 5+ consecutive
failures (``SubscriptionQuerySet.failing``).

Every alert has a stable key (the incident key). Some alerts need a human without making the
service unhealthy (accounts to re-authorize, provider errors, disk): ``affects_status`` False.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.monitoring.models import LEVEL_RANK, STATUS_RANK, HealthStatus, Level
from apps.monitoring.services.alert_content import clock, human_duration

STATUS_FOR_LEVEL = {Level.WARNING: HealthStatus.DEGRADED, Level.CRITICAL: HealthStatus.CRITICAL}


def _alert(key: str, level: str, title: str, message: str, value: Any = None,
           affects_status: bool = True) -> dict:
    return {"key": key, "level": level, "title": title, "message": message, "value": value,
            "affects_status": affects_status}


def _band(value: float | None, healthy: float, critical: float) -> str | None:
    """Level for a percentage where higher is better (None: fine or unknown)."""
    if value is None or value >= healthy:
        return None
    return Level.CRITICAL if value < critical else Level.WARNING


def _count_band(value: int, degraded: int, critical: int) -> str | None:
    """Level for a count where lower is better: above ``critical`` / above ``degraded``."""
    if value > critical:
        return Level.CRITICAL
    return Level.WARNING if value > degraded else None


def evaluate(metrics: dict, t: dict,
             slo_alerts: list[dict] | None = None) -> tuple[str, list[dict]]:
    infra = metrics["infrastructure"]
    alerts: list[dict] = []
    if not infra["cache_healthy"]:
        alerts.append(_alert("cache_down", Level.WARNING, "Cache unreachable",
                             "The cache does not answer: rate limits and the alert fallback "
                             "store are degraded."))
    if not infra["database_healthy"]:
        alerts.insert(0, _alert("database_down", Level.CRITICAL, "Database unreachable",
                                "The health check could not query the database: receivers "
                                "answer 503 and no notification is processed."))
        return HealthStatus.CRITICAL, alerts
    alerts += _subscription_alerts(metrics["subscriptions"], t)
    alerts += _notification_alerts(metrics["notifications"], t)
    alerts += _operational_alerts(metrics, t)
    # The SLO burn-rate alerts (services/slo.py) replace a success-rate threshold.
    alerts += slo_alerts or []
    alerts += _rollout_alerts(metrics.get("rollout") or {})
    alerts = merge_related(alerts)
    status = HealthStatus.HEALTHY
    for alert in alerts:
        candidate = STATUS_FOR_LEVEL[alert["level"]] if alert["affects_status"] \
            else HealthStatus.HEALTHY
        if STATUS_RANK[candidate] > STATUS_RANK[status]:
            status = candidate
    return status, alerts


def _subscription_alerts(subs: dict, t: dict) -> list[dict]:
    alerts = []
    pct = subs["health_percentage"]
    level = _band(pct, t["subscription_health_healthy"], t["subscription_health_critical"])
    if level:
        alerts.append(_alert(
            "subscription_health", level, f"Subscription health at {pct}%",
            f"{subs['active_subscriptions']} of {subs['total_subscriptions']} push "
            f"subscriptions are active.", pct))
    failed = subs["failed_subscriptions"]
    level = _count_band(failed, t["failed_subscriptions_degraded"],
                        t["failed_subscriptions_critical"])
    if level:
        by_status = subs.get("by_status", {})
        alerts.append(_alert(
            "failed_subscriptions", level, f"{failed} failed subscriptions",
            f"{failed} push subscriptions are failing ({by_status.get('failed', 0)} failed, "
            f"{by_status.get('suspended', 0)} suspended, "
            f"{subs.get('failing_active_subscriptions', 0)} active with repeated failures).",
            failed))
    return alerts


def _notification_alerts(notes: dict, t: dict) -> list[dict]:
    alerts = []
    old = notes["old_pending_notifications"]
    level = _count_band(old, t["old_pending_degraded"], t["old_pending_critical"])
    if level:
        minutes = t["old_pending_age_seconds"] // 60
        alerts.append(_alert(
            "notification_backlog", level, f"{old} notifications waiting over {minutes} min",
            f"Oldest waiting notification: "
            f"{human_duration(notes['oldest_pending_age_seconds'])}.", old))
    return alerts


def _operational_alerts(metrics: dict, t: dict) -> list[dict]:
    infra, notes = metrics["infrastructure"], metrics["notifications"]
    api, calendars = metrics["api_performance"], metrics["calendars"]
    alerts = []
    if infra["workers_alive"] == 0:
        waiting = notes["pending_notifications"]
        # Nobody is waiting yet: a warning; notifications piling up unprocessed: critical.
        alerts.append(_alert(
            "worker_stale", Level.CRITICAL if waiting else Level.WARNING,
            "No live notification worker",
            f"{last_worker_seen(infra)}; {waiting} notifications waiting.",
            infra["worker_heartbeat_age_seconds"], affects_status=bool(waiting)))
    lost = infra.get("hosts_lost") or []
    if lost and infra["workers_alive"]:
        alerts.append(_alert(
            "worker_host_lost", Level.WARNING, f"Worker lost on {', '.join(lost)}",
            f"The worker on {', '.join(lost)} stopped without shutting down (host down or "
            f"killed); {infra['workers_alive']} worker(s) elsewhere carry the load.",
            len(lost), affects_status=False))
    reauth = calendars["accounts_reauth_required"]
    if reauth:
        alerts.append(_alert(
            "accounts_reauth_required", Level.WARNING, f"{reauth} accounts need re-authorization",
            "Their tokens were revoked or expired: the users must connect them again; their "
            "calendars are not syncing.", reauth, affects_status=False))
    calls, rate = api["api_calls_last_hour"], api["api_error_rate_percentage"]
    if calls >= t["api_error_min_calls"] and rate >= t["api_error_rate_warning"]:
        alerts.append(_alert(
            "provider_api_errors", Level.WARNING, f"Provider API errors at {rate}%",
            f"{api['api_errors_last_hour']} of {calls} provider calls in the last hour failed.",
            rate, affects_status=False))
    if not infra["disk_space_ok"]:
        alerts.append(_alert("disk_space_low", Level.WARNING, "Disk space low",
                             f"Free fraction: {infra['disk_free_fraction']}.",
                             infra["disk_free_fraction"], affects_status=False))
    if not infra["memory_usage_ok"]:
        alerts.append(_alert("memory_low", Level.WARNING, "Memory low",
                             f"Available fraction: {infra['memory_available_fraction']}.",
                             infra["memory_available_fraction"], affects_status=False))
    return alerts


def last_worker_seen(infra: dict) -> str:
    age = infra["worker_heartbeat_age_seconds"]
    stopped = parse_datetime(infra.get("last_worker_stopped_at") or "")
    # Whichever happened last: a clean stop, or the last heartbeat of a worker that vanished.
    if stopped is not None and (age is None
                                or (timezone.now() - stopped).total_seconds() <= age):
        return f"The last worker stopped at {clock(stopped)} UTC"
    if age is not None:
        return f"Last worker heartbeat {human_duration(age)} ago"
    return "No worker has ever started"


def merge_related(alerts: list[dict]) -> list[dict]:
    """Conditions with one cause are one incident: a backlog growing while no worker lives is
    the dead worker's consequence, so it joins the worker's alert instead of paging again."""
    keys = {a["key"]: a for a in alerts}
    worker, backlog = keys.get("worker_stale"), keys.get("notification_backlog")
    if not (worker and backlog):
        return alerts
    merged = {**worker, "message": f"{worker['message']} {backlog['title']}: "
                                   f"{backlog['message']}",
              "level": max(worker["level"], backlog["level"], key=LEVEL_RANK.__getitem__),
              "affects_status": True, "related": ["notification_backlog"]}
    return [merged if a is worker else a for a in alerts if a is not backlog]


def _rollout_alerts(rollout: dict) -> list[dict]:
    """Push left off by hand, or rollout settings that say two different things."""
    alerts = []
    if rollout.get("kill_switch") == "off":
        at = rollout.get("kill_switch_changed_at")
        when = f" at {at[:16].replace('T', ' ')} UTC" if at else ""
        alerts.append(_alert(
            "kill_switch_off", Level.WARNING, "Push notifications switched off",
            f"The runtime kill switch is off (set by {rollout.get('kill_switch_changed_by') or '?'}"
            f"{when}): every calendar is polled instead of pushed.", "off"))
    phase = rollout.get("deployment_phase")
    if phase and not rollout.get("webhooks_enabled_setting"):
        alerts.append(_alert(
            "rollout_phase_mismatch", Level.WARNING,
            f"Phase {phase} set but WEBHOOKS_ENABLED=false",
            f"WEBHOOK_DEPLOYMENT_PHASE={phase} asks for push, WEBHOOKS_ENABLED=false turns it "
            f"off; the off setting wins, so no calendar is on push.", phase))
    elif phase == 2 and not rollout.get("early_adopters"):
        alerts.append(_alert(
            "rollout_phase_mismatch", Level.WARNING, "Phase 2 without early adopters",
            "WEBHOOK_DEPLOYMENT_PHASE=2 puts only WEBHOOK_EARLY_ADOPTERS on push, and that "
            "list is empty: no calendar is on push.", phase))
    return alerts


RECOMMENDATIONS = {
    "database_down": "Check the database server and the connection settings; the receivers "
                     "answer 503 until it is back.",
    "cache_down": "Check Redis (REDIS_URL).",
    "subscription_health": "Run `manage.py subscription_maintenance` and look at the failed "
                           "subscriptions' last_error in the admin.",
    "failed_subscriptions": "Run `manage.py subscription_maintenance`; subscriptions with "
                            "repeated failures are suspended and their calendars polled.",
    "slo_availability": "Receivers answer 5xx: check the database and the web processes "
                        "(the health document's slo block shows the windows burning).",
    "slo_freshness": "Changes reach calendars late or never: check the workers, the backlog, "
                     "failed notifications' errors and provider API errors.",
    "notification_backlog": "Check that `process_notifications` workers run and keep up.",
    "worker_stale": "Start or restart the `process_notifications` worker.",
    "scheduler_stale": "Start `python manage.py run_scheduler` (or cron with the crontab) on "
                       "at least one host; every host may run it.",
    "worker_host_lost": "Restart the host's processes (gunicorn, worker, scheduler), or "
                        "remove it from the load balancer.",
    "accounts_reauth_required": "Ask the owners of the accounts marked 're-authorization "
                                "required' to connect them again.",
    "provider_api_errors": "Check the provider's status page and the API error kinds.",
    "disk_space_low": "Free disk space (logs, old notifications: cleanup_webhook_data).",
    "memory_low": "Check the processes' memory use.",
    "kill_switch_off": "If the reason for switching push off is over, run "
                       "`manage.py webhooks_switch on`.",
    "rollout_phase_mismatch": "Make WEBHOOK_DEPLOYMENT_PHASE, WEBHOOKS_ENABLED and "
                              "WEBHOOK_EARLY_ADOPTERS agree in .env, then restart.",
}


def recommend(metrics: dict, alerts: list[dict]) -> list[str]:
    advice = [RECOMMENDATIONS[a["key"]] for a in alerts if a["key"] in RECOMMENDATIONS]
    subs, api = metrics["subscriptions"], metrics["api_performance"]
    if subs.get("expiring_soon"):
        advice.append(f"{subs['expiring_soon']} subscriptions expire within a day: make sure "
                      "subscription maintenance runs on schedule.")
    if (api.get("api_quota_usage_percentage") or 0) >= 80:
        advice.append("A provider's hourly API quota is over 80 % used: slow polling down.")
    stale = metrics["calendars"].get("calendars_behind_staleness_limit")
    if stale:
        advice.append(f"{stale} calendars have not synced within POLL_STALENESS_SECONDS: check "
                      "`poll_calendars`.")
    return advice
