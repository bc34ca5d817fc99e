"""What the monitor reads and writes: provider API calls, health snapshots, incidents."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.calendars.models import Calendar


class ProviderApiCall(models.Model):
    """One outbound provider HTTP call (written by ``calendar_sync.http``)."""

    provider = models.CharField(max_length=16)
    operation = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # null: no response
    duration_ms = models.PositiveIntegerField(default=0)
    # '' on success; else rate_limited / auth_revoked / not_found / cursor_expired / transient /
    # client_error / network.
    error_kind = models.CharField(max_length=32, blank=True, default="")
    account_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["created_at"], name="apicall_created_idx"),
            models.Index(fields=["provider", "created_at"], name="apicall_provider_created_idx"),
        ]


class HealthSnapshot(models.Model):
    """The result of one health check, kept for the dashboard's 24 h trends."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    status = models.CharField(max_length=16)
    total_subscriptions = models.PositiveIntegerField(default=0)
    active_subscriptions = models.PositiveIntegerField(default=0)
    failed_subscriptions = models.PositiveIntegerField(default=0)
    success_rate = models.FloatField(null=True, blank=True)
    pending_notifications = models.PositiveIntegerField(default=0)
    document = models.JSONField(default=dict)


class Incident(models.Model):
    """An alert with a stable key: opened once, escalated, repeated at most every N, resolved
    once clear for long enough."""

    class Level(models.TextChoices):
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    key = models.CharField(max_length=64)
    level = models.CharField(max_length=16, choices=Level.choices)
    title = models.CharField(max_length=255)
    message = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    notified_level = models.CharField(max_length=16, blank=True, default="")
    # When the condition stopped being reported (None: it is reported). The incident is
    # resolved only once this is ALERT_RESOLVE_AFTER_SECONDS old, so a flapping figure does
    # not open and resolve it at every check. Kept after resolution: when it really cleared.
    clear_since = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # At most one open incident per key.
            models.UniqueConstraint(
                fields=["key"], condition=Q(resolved_at__isnull=True), name="incident_open_key"
            ),
            models.CheckConstraint(
                condition=Q(level__in=["warning", "critical"]), name="incident_level_valid"
            ),
        ]
        indexes = [models.Index(fields=["resolved_at", "opened_at"], name="incident_open_idx")]

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class AlertDelivery(models.Model):
    """Every attempt to deliver an incident message to a channel, with its outcome."""

    class Event(models.TextChoices):
        OPENED = "opened", "Opened"
        ESCALATED = "escalated", "Escalated"
        REPEATED = "repeated", "Repeated"
        RESOLVED = "resolved", "Resolved"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=32)
    event = models.CharField(max_length=16, choices=Event.choices)
    attempt = models.PositiveSmallIntegerField(default=1)
    succeeded = models.BooleanField(default=False)
    permanent_failure = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)


class AutoFallback(models.Model):
    """A calendar whose fallback polling the health monitor (not an operator) turned on."""

    calendar = models.OneToOneField(
        Calendar, on_delete=models.CASCADE, related_name="auto_fallback"
    )
    reason = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)


class JobRunQuerySet(models.QuerySet):
    def unfinished(self) -> JobRunQuerySet:
        return self.filter(finished_at__isnull=True)

    def finished(self) -> JobRunQuerySet:
        return self.filter(finished_at__isnull=False)


class JobRun(models.Model):
    """One run of a scheduled job on some host. ``(job, slot)`` is unique: the row is the claim
    that makes each scheduled minute run once across every host that runs the schedule."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        # The process died mid-run (found when the job's lock was free again).
        INTERRUPTED = "interrupted", "Interrupted"

    job = models.CharField(max_length=64)
    slot = models.DateTimeField()
    host = models.CharField(max_length=128)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    summary = models.CharField(max_length=255, blank=True, default="")

    objects = JobRunQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "slot"], name="jobrun_job_slot")]
        indexes = [models.Index(fields=["job", "-started_at"], name="jobrun_latest_idx"),
                   models.Index(fields=["started_at"], name="jobrun_started_idx")]
