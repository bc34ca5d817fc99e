"""Automatic responses to the health status, one list of steps per status, on stored state.

- critical: every channel alerted and on-call paged (the alert manager routes critical
  incidents to the pager); fallback polling for every sync-enabled calendar; subscriptions
  with WEBHOOK_MAX_SUBSCRIPTION_FAILURES or more failures suspended (their calendars polled);
  checks every HEALTH_DEGRADED_CHECK_INTERVAL_SECONDS.
- degraded: subscription maintenance; checks every HEALTH_DEGRADED_CHECK_INTERVAL_SECONDS;
  warnings; fallback polling for the calendars of failing subscriptions.
- healthy: checks every HEALTH_CHECK_INTERVAL_SECONDS; the fallbacks these responses turned on
  (``AutoFallback`` rows) are turned off for calendars whose push works again. A fallback an
  operator set by hand has no such row and is never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from apps.calendars.models import Calendar
from apps.monitoring.models import AutoFallback, HealthStatus
from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.maintenance import run_maintenance
from calendar_sync import health_schedule

log = logging.getLogger(__name__)

SubscriptionStatus = WebhookSubscription.Status
BROKEN_SUBSCRIPTION = (SubscriptionStatus.FAILED, SubscriptionStatus.SUSPENDED,
                       SubscriptionStatus.EXPIRED)


@dataclass
class ResponseResult:
    status: str
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"status": self.status, "actions": self.actions, "errors": self.errors}


def respond(health: dict, act: bool = True) -> ResponseResult:
    """Run the responses for ``health['status']``; each step's failure is recorded, not raised.

    With ``act`` False only the check's own cadence follows the status: nothing else in the
    system changes (an operator's look at the health must not suspend subscriptions).
    """
    status = health["status"]
    result = ResponseResult(status)
    if not health["metrics"]["infrastructure"].get("database_healthy"):
        result.errors.append("database unreachable: no automatic response possible")
        return result
    steps = {HealthStatus.CRITICAL: CRITICAL_STEPS,
             HealthStatus.DEGRADED: DEGRADED_STEPS}.get(status, HEALTHY_STEPS)
    steps = (forget_overridden_fallbacks, *steps)
    if not act:
        skipped = [s.__name__.replace("_", " ") for s in steps
                   if s not in CADENCE_STEPS and s is not warn_degraded]
        steps = tuple(s for s in steps if s in CADENCE_STEPS)
        if skipped and status != HealthStatus.HEALTHY:
            result.actions.append(f"not run without --respond: {', '.join(skipped)}")
    for step in steps:
        try:
            message = step()
        except DatabaseError as exc:
            result.errors.append(f"{step.__name__}: database error {type(exc).__name__}")
            continue
        if message:
            result.actions.append(message)
    for line in result.actions:
        log.log(logging.INFO if status == HealthStatus.HEALTHY else logging.WARNING,
                "health %s: %s", status, line)
    return result


# --- building blocks -----------------------------------------------------------------------


def failing_calendars() -> QuerySet[Calendar]:
    """Sync-enabled calendars with a broken subscription and no working one."""
    now = timezone.now()
    subs = WebhookSubscription.objects.filter(calendar=OuterRef("pk"))
    broken = subs.filter(Q(status__in=BROKEN_SUBSCRIPTION) | Q(status="active",
                                                                  expires_at__lte=now))
    working = subs.live(now)
    return Calendar.objects.filter(Exists(broken), ~Exists(working), sync_enabled=True)


def enable_fallback(calendars: QuerySet[Calendar], reason: str) -> int:
    """Turn fallback polling on and remember that we did; returns how many we turned on."""
    with transaction.atomic():
        ids = list(calendars.filter(fallback_polling_enabled=False)
                   .select_for_update().values_list("pk", flat=True))
        if not ids:
            return 0
        AutoFallback.objects.bulk_create(
            [AutoFallback(calendar_id=pk, reason=reason) for pk in ids], ignore_conflicts=True
        )
        Calendar.objects.filter(pk__in=ids).update(fallback_polling_enabled=True)
    return len(ids)


# --- steps (each returns a line for the summary, or "" when it had nothing to do) ----------


def forget_overridden_fallbacks() -> str:
    """An operator switched off a fallback we turned on: it is no longer ours.

    Without this, a fallback the operator later switches on again by hand would still look
    like ours, and the next healthy check would switch it off.
    """
    forgotten, _ = AutoFallback.objects.filter(calendar__fallback_polling_enabled=False).delete()
    return f"forgot {forgotten} fallbacks an operator turned off" if forgotten else ""


def faster_checks() -> str:
    seconds = settings.HEALTH_DEGRADED_CHECK_INTERVAL_SECONDS
    return f"health checks every {seconds} s" if health_schedule.set_interval(seconds) else ""


def normal_checks() -> str:
    seconds = settings.HEALTH_CHECK_INTERVAL_SECONDS
    changed = health_schedule.set_interval(seconds)
    return f"health checks back to every {seconds} s" if changed else ""


def fallback_for_all() -> str:
    n = enable_fallback(Calendar.objects.filter(sync_enabled=True), reason="critical")
    return f"fallback polling turned on for {n} calendars" if n else ""


def fallback_for_failing() -> str:
    n = enable_fallback(failing_calendars(), reason="failing subscription")
    return f"fallback polling turned on for {n} calendars with failing subscriptions" if n else ""


def suspend_failing_subscriptions() -> str:
    limit = settings.WEBHOOK_MAX_SUBSCRIPTION_FAILURES
    with transaction.atomic():
        rows = WebhookSubscription.objects.filter(failure_count__gte=limit).exclude(
            status__in=(SubscriptionStatus.SUSPENDED, SubscriptionStatus.STOPPED),
        ).select_for_update()
        calendar_ids = set(rows.values_list("calendar_id", flat=True))
        suspended = rows.update(status=SubscriptionStatus.SUSPENDED, updated_at=timezone.now())
    if not suspended:
        return ""
    polled = enable_fallback(Calendar.objects.filter(pk__in=calendar_ids, sync_enabled=True),
                             reason="subscription suspended")
    return (f"suspended {suspended} subscriptions with {limit}+ failures; fallback polling "
            f"turned on for {polled} of their calendars")


def run_subscription_maintenance() -> str:
    try:
        summary = run_maintenance(dry_run=False)
    except DatabaseError:
        raise
    except Exception as exc:  # noqa: BLE001 - a provider outage must not stop the other steps
        log.exception("subscription maintenance failed")
        return f"subscription maintenance failed: {type(exc).__name__}"
    text = ", ".join(f"{kind} {n}" for kind, n in summary.counts.items() if n) or "nothing to do"
    return f"ran subscription maintenance: {text}"


def warn_degraded() -> str:
    return "warning: service degraded (see alerts)"


def release_fallbacks() -> str:
    """Turn off the fallbacks we turned on, for calendars whose push works again."""
    with transaction.atomic():
        rows = AutoFallback.objects.exclude(
            calendar_id__in=failing_calendars().values("pk")).select_for_update()
        ids = list(rows.values_list("calendar_id", flat=True))
        if not ids:
            return ""
        Calendar.objects.filter(pk__in=ids).update(fallback_polling_enabled=False)
        AutoFallback.objects.filter(calendar_id__in=ids).delete()
    return f"fallback polling turned off again for {len(ids)} recovered calendars"


Step = Callable[[], str]
CRITICAL_STEPS: tuple[Step, ...] = (faster_checks, suspend_failing_subscriptions,
                                    fallback_for_all)
DEGRADED_STEPS: tuple[Step, ...] = (faster_checks, run_subscription_maintenance, warn_degraded,
                                    fallback_for_failing)
HEALTHY_STEPS: tuple[Step, ...] = (normal_checks, release_fallbacks)
# The check's own cadence: follows the status even when only observing.
CADENCE_STEPS = frozenset({faster_checks, normal_checks})
