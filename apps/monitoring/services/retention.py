"""Retention of the monitoring tables: provider API call records, health snapshots, incidents,
scheduled job runs; and of the process records around them: worker heartbeats, expired Django
sessions.

Open incidents and their deliveries are never deleted, whatever their age. Resolved incidents
are history an operator reads after the fact, so they are kept as long as failed notifications
(``CLEANUP_KEEP_FAILED_DAYS``), with their deliveries.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db.models import QuerySet
from django.utils import timezone

from apps.monitoring.models import AlertDelivery, HealthSnapshot, Incident, ProviderApiCall
from apps.monitoring.services.jobs import expired_job_runs
from apps.webhooks.models import WorkerHeartbeat
from apps.webhooks.services.cleanup import cutoffs
from calendar_sync.purge import Progress, PurgeResult, purge


def expired_api_calls(days: int, now: datetime | None = None) -> QuerySet:
    cutoff, _ = cutoffs(days, now)
    return ProviderApiCall.objects.filter(created_at__lt=cutoff)


def expired_snapshots(days: int, now: datetime | None = None) -> QuerySet:
    cutoff, _ = cutoffs(days, now)
    return HealthSnapshot.objects.filter(created_at__lt=cutoff)


def expired_deliveries(days: int, now: datetime | None = None) -> QuerySet:
    _, keep_until = cutoffs(days, now)
    return AlertDelivery.objects.filter(
        incident__resolved_at__isnull=False, incident__resolved_at__lt=keep_until
    )


def expired_incidents(days: int, now: datetime | None = None) -> QuerySet:
    _, keep_until = cutoffs(days, now)
    return Incident.objects.filter(resolved_at__isnull=False, resolved_at__lt=keep_until)


def expired_heartbeats(days: int, now: datetime | None = None) -> QuerySet:
    """Workers silent for ``days``: stopped long ago or vanished (a live one beats every loop)."""
    cutoff, _ = cutoffs(days, now)
    return WorkerHeartbeat.objects.filter(last_seen_at__lt=cutoff)


def expired_sessions(now: datetime | None = None) -> QuerySet:
    """What ``clearsessions`` removes, in batches like the rest."""
    return Session.objects.filter(expire_date__lt=now or timezone.now())


def purge_monitoring_data(days: int, *, dry_run: bool = False, batch_size: int | None = None,
                          progress: Progress | None = None,
                          now: datetime | None = None) -> list[PurgeResult]:
    size = batch_size or settings.CLEANUP_BATCH_SIZE
    targets = (
        ("provider API calls", expired_api_calls(days, now)),
        ("health snapshots", expired_snapshots(days, now)),
        # Deliveries first, in their own batches, so an incident's cascade stays small.
        ("alert deliveries", expired_deliveries(days, now)),
        ("incidents", expired_incidents(days, now)),
        ("job runs", expired_job_runs(days, now)),
        ("worker heartbeats", expired_heartbeats(days, now)),
        ("expired sessions", expired_sessions(now)),
    )
    return [purge(label, qs, size, dry_run=dry_run, progress=progress) for label, qs in targets]
