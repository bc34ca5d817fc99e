"""The maintenance pass: bring every calendar's push channel to the state it should be in.

Each calendar is planned from its rows (``plan_calendar``, a pure function), then worked on
under its lock, re-planned from fresh rows first: two processes running maintenance at once
never work on the same calendar, and the second of two runs in a row finds nothing to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Prefetch
from django.utils import timezone

from apps.calendars.models import Calendar
from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.flags import push_unwanted_reason, webhooks_enabled
from apps.webhooks.services.subscriptions.orphans import stop_orphans
from apps.webhooks.services.subscriptions.push_channels import (
    OPEN,
    REPAIRABLE,
    Status,
    calendar_lock,
    mark_stopped,
    renewal_due,
    retry_due,
    stop_channel,
)
from apps.webhooks.services.subscriptions.renewal import (
    create_subscription,
    renew_subscription,
    repair,
)

log = logging.getLogger(__name__)

# One line each, in this order.
KINDS = ("renewed", "created", "repaired", "stopped", "lapsed", "failed", "suspended",
         "orphans stopped", "orphans abandoned", "orphans retried", "busy", "errors")
# What a planned action counts as when it succeeds (dry runs count plans as successes).
_SUCCESS = {"renew": "renewed", "create": "created", "repair": "repaired", "stop": "stopped",
            "finish": "stopped", "expire": "lapsed"}
# Preference for the row that carries a calendar's channel when there are several.
_RANK = {Status.ACTIVE: 0, Status.PENDING: 1}

Action = tuple[str, WebhookSubscription | None]


@dataclass
class MaintenanceSummary:
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def add(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def __getitem__(self, kind: str) -> int:
        return self.counts.get(kind, 0)

    @property
    def changes(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind not in ("busy", "errors"))

    def lines(self) -> list[str]:
        """One line per action kind; a dry run says so first (its counts are plans)."""
        header = ["dry run: nothing was changed; the counts are what a run would do"]
        body = [f"{kind} {self.counts.get(kind, 0)}" for kind in KINDS]
        return header + body if self.dry_run else body


def _pending_stale(sub: WebhookSubscription, now: datetime) -> bool:
    # A watch call takes seconds; a row pending for longer was left by a crashed process.
    return now - sub.updated_at > timedelta(seconds=settings.WEBHOOK_PENDING_STALE_SECONDS)


def plan_calendar(calendar: Calendar, subs: list[WebhookSubscription], now: datetime,
                  enabled: bool | None = None) -> list[Action]:
    """What to do for one calendar, given its open rows. Changes nothing."""
    open_subs = [s for s in subs if s.status in OPEN]
    if push_unwanted_reason(calendar, enabled):
        return [("stop", s) for s in open_subs if s.status in REPAIRABLE or retry_due(s, now)]
    actions: list[Action] = [("finish", s) for s in open_subs
                             if s.replaced_by_id and retry_due(s, now)]
    current = sorted((s for s in open_subs if not s.replaced_by_id),
                     key=lambda s: (_RANK.get(s.status, 2), -s.created_at.timestamp(), -s.pk))
    if not current:
        return [*actions, ("create", None)]
    slot, extras = current[0], current[1:]
    actions += [("stop", s) for s in extras]  # duplicates left by a race or a crash
    if slot.status == Status.PENDING:
        if _pending_stale(slot, now):
            actions.append(("repair", slot))
    elif slot.status == Status.ACTIVE:
        if slot.expires_at is not None and slot.expires_at <= now:
            actions.append(("expire", slot))
            if retry_due(slot, now):
                actions.append(("repair", slot))
        elif renewal_due(slot, now) and retry_due(slot, now):
            actions.append(("renew", slot))
    elif retry_due(slot, now):
        actions.append(("repair", slot))
    return actions


def _outcome(row: WebhookSubscription, success: str) -> str:
    if row.status == Status.ACTIVE and row.failure_count == 0:
        return success
    return "suspended" if row.status == Status.SUSPENDED else "failed"


def _execute(calendar: Calendar, kind: str, sub: WebhookSubscription | None, reason: str,
             summary: MaintenanceSummary) -> None:
    if kind == "create":
        summary.add(_outcome(create_subscription(calendar), "created"))
    elif kind == "renew":
        summary.add(_outcome(renew_subscription(sub), "renewed"))
    elif kind == "repair":
        summary.add(_outcome(repair(sub), "repaired"))
    elif kind == "expire":
        log.warning("subscription %s lapsed (expired %s) before it was renewed", sub.pk,
                    sub.expires_at)
        sub.status = Status.EXPIRED
        sub.save(update_fields=["status", "updated_at"])
        summary.add("lapsed")
    elif kind == "finish" and sub.expires_at is not None and sub.expires_at <= timezone.now():
        mark_stopped(sub, "replaced; expired before it could be stopped")
        summary.add("stopped")
    else:  # stop, finish
        why = reason or ("replaced by a new channel" if kind == "finish" else "duplicate")
        summary.add("stopped" if stop_channel(sub, why) else "failed")


def reconcile_calendar(calendar_id: int, summary: MaintenanceSummary, *,
                       enabled: bool | None = None, wait: float = 0.0) -> None:
    """Plan one calendar again from fresh rows, under its lock, and carry the plan out."""
    with calendar_lock(calendar_id, wait=wait) as acquired:
        if not acquired:
            summary.add("busy")
            return
        calendar = Calendar.objects.select_related("calendar_account").get(pk=calendar_id)
        subs = list(calendar.webhook_subscriptions.filter(status__in=OPEN))
        reason = push_unwanted_reason(calendar, enabled)
        for kind, sub in plan_calendar(calendar, subs, timezone.now(), enabled):
            if sub is not None:
                sub.refresh_from_db()  # an earlier action of this plan may have changed it
                if sub.status == Status.STOPPED:
                    continue
            _execute(calendar, kind, sub, reason, summary)


def run_maintenance(dry_run: bool = False) -> MaintenanceSummary:
    """Renew what is due, repair what failed or lapsed, create what is missing, stop what
    should not exist, then deal with orphans. One calendar's trouble never stops the run."""
    summary = MaintenanceSummary(dry_run=dry_run)
    enabled = webhooks_enabled()  # read once: one run sees one switch position
    now = timezone.now()
    calendars = (
        Calendar.objects.select_related("calendar_account")
        .prefetch_related(Prefetch("webhook_subscriptions", to_attr="open_subs",
                                   queryset=WebhookSubscription.objects.filter(status__in=OPEN)))
        .order_by("pk")
    )
    for calendar in calendars.iterator(chunk_size=500):
        plan = plan_calendar(calendar, calendar.open_subs, now, enabled)
        if not plan:
            continue
        if dry_run:
            for kind, _ in plan:
                summary.add(_SUCCESS[kind])
            continue
        try:
            reconcile_calendar(calendar.pk, summary, enabled=enabled)
        except Exception:  # counted and logged: the other calendars go on
            log.exception("maintenance of calendar %s failed", calendar.pk)
            summary.add("errors")
    orphans = stop_orphans(dry_run=dry_run)
    summary.add("orphans stopped", orphans.stopped)
    summary.add("orphans abandoned", orphans.abandoned)
    summary.add("orphans retried", orphans.retry)
    return summary
