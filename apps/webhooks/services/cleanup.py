"""Retention of the webhooks tables: processed notifications, resolved orphans, old counters.

What is never deleted here: notifications still waiting or being processed (``pending``,
``processing``: work not done yet), subscriptions, and ``failed`` notifications younger than
``CLEANUP_KEEP_FAILED_DAYS`` (the evidence an operator needs to investigate).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.webhooks.models import OrphanChannel, WebhookCounter, WebhookNotification
from calendar_sync.purge import Progress, PurgeResult, purge

Status = WebhookNotification.Status


def cutoffs(days: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``(cutoff, failed_cutoff)``: failures are kept at least as long as everything else."""
    now = now or timezone.now()
    keep_failed = max(days, settings.CLEANUP_KEEP_FAILED_DAYS)
    return now - timedelta(days=days), now - timedelta(days=keep_failed)


def expired_notifications(days: int, now: datetime | None = None) -> QuerySet:
    cutoff, failed_cutoff = cutoffs(days, now)
    return WebhookNotification.objects.filter(
        Q(processing_status__in=[Status.COMPLETED, Status.IGNORED], received_at__lt=cutoff)
        | Q(processing_status=Status.FAILED, received_at__lt=failed_cutoff)
    )


def expired_orphans(days: int, now: datetime | None = None) -> QuerySet:
    # Not heard of for `days`: the channel expired long ago (a push would recreate the row).
    cutoff, _ = cutoffs(days, now)
    return OrphanChannel.objects.filter(
        Q(resolved_at__isnull=True) | Q(resolved_at__lt=cutoff), last_seen_at__lt=cutoff
    )


def expired_counters(days: int, now: datetime | None = None) -> QuerySet:
    cutoff, _ = cutoffs(days, now)
    return WebhookCounter.objects.filter(bucket__lt=cutoff)


def purge_webhook_data(days: int, *, dry_run: bool = False, batch_size: int | None = None,
                       progress: Progress | None = None,
                       now: datetime | None = None) -> list[PurgeResult]:
    size = batch_size or settings.CLEANUP_BATCH_SIZE
    targets = (
        ("notifications", expired_notifications(days, now)),
        ("orphan channels", expired_orphans(days, now)),
        ("webhook counters", expired_counters(days, now)),
    )
    return [purge(label, qs, size, dry_run=dry_run, progress=progress) for label, qs in targets]
