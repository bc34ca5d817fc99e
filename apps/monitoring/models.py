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


class HealthStatus(models.TextChoices):
    """The health document's status, worst last."""

    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    CRITICAL = "critical", "Critical"


class Level(models.TextChoices):
    """An alert's (and its incident's) level, worst last."""

    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class IncidentEvent(models.TextChoices):
    """What a message says about its incident."""

    OPENED = "opened", "Opened"
    ESCALATED = "escalated", "Escalated"
    REPEATED = "repeated", "Repeated"
    RESOLVED = "resolved", "Resolved"


STATUS_RANK = {status: rank for rank, status in enumerate(HealthStatus)}
LEVEL_RANK = {level: rank for rank, level in enumerate(Level, start=1)}


class IncidentQuerySet(models.QuerySet):
    def open(self) -> IncidentQuerySet:
        return self.filter(resolved_at__isnull=True)


class Incident(models.Model):
    """An alert with a stable key: opened once, escalated, repeated at most every N, resolved
    once clear for long enough."""

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

    objects = IncidentQuerySet.as_manager()

    class Meta:
        constraints = [
            # At most one open incident per key.
            models.UniqueConstraint(
                fields=["key"], condition=Q(resolved_at__isnull=True), name="incident_open_key"
            ),
            models.CheckConstraint(
                condition=Q(level__in=Level.values), name="incident_level_valid"
            ),
        ]
        indexes = [models.Index(fields=["resolved_at", "opened_at"], name="incident_open_idx")]

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class AlertDelivery(models.Model):
    """Every attempt to deliver an incident message to a channel, with its outcome."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=32)
    event = models.CharField(max_length=16, choices=IncidentEvent.choices)
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


class SliRollup(models.Model):
    """Additive counts of what users feel, per provider and time bucket.

    Written as work completes (receivers' answers via the cache, the worker's finished
    notifications, polled changes) by one additive upsert for the minute, the hour and the
    running total at once, so every SLO, trend and health query reads a few thousand rows
    whatever the traffic. Minute rows serve the short burn-rate windows and are pruned after a
    few hours; hour rows serve the 24 h series, the 3 d and 28 d windows; ``total`` rows
    (bucket = epoch) are the monotonic counters ``/metrics`` exposes.
    """

    class Resolution(models.TextChoices):
        MINUTE = "minute", "Minute"
        HOUR = "hour", "Hour"
        TOTAL = "total", "Total"

    bucket = models.DateTimeField()
    resolution = models.CharField(max_length=8, choices=Resolution.choices)
    provider = models.CharField(max_length=16)
    # Availability: valid provider requests answered 2xx / 5xx (503 while the database is down).
    requests_ok = models.PositiveBigIntegerField(db_default=0)
    requests_failed = models.PositiveBigIntegerField(db_default=0)
    # Freshness: changes (processed notifications, polled event changes) and those visible
    # locally within SLO_FRESHNESS_SECONDS.
    changes = models.PositiveBigIntegerField(db_default=0)
    changes_fresh = models.PositiveBigIntegerField(db_default=0)
    # The dashboard's series.
    notifications_received = models.PositiveBigIntegerField(db_default=0)
    notifications_ok = models.PositiveBigIntegerField(db_default=0)
    notifications_failed = models.PositiveBigIntegerField(db_default=0)
    processing_ms_sum = models.PositiveBigIntegerField(db_default=0)
    processing_count = models.PositiveBigIntegerField(db_default=0)
    # Provider API calls (errors: not the protocols' expected answers, see http.py).
    api_calls = models.PositiveBigIntegerField(db_default=0)
    api_errors = models.PositiveBigIntegerField(db_default=0)
    api_ms_sum = models.PositiveBigIntegerField(db_default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resolution", "bucket", "provider"],
                                    name="slirollup_unique"),
        ]


class ChangeLagBucket(models.Model):
    """How long after the provider's last-modified time a change was committed locally: an
    hourly histogram (count of changes with lag <= ``le_seconds``, not cumulative)."""

    hour = models.DateTimeField()
    provider = models.CharField(max_length=16)
    le_seconds = models.PositiveIntegerField()  # upper bound of the bucket; 0 = +Inf
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "provider", "le_seconds"],
                                    name="changelag_unique"),
        ]


class CalendarHourRollup(models.Model):
    """Processing time per calendar and hour: the dashboard's slowest calendars read the top
    rows of an index instead of a day of notifications."""

    hour = models.DateTimeField()
    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=16)
    notifications = models.PositiveBigIntegerField(default=0)
    processing_ms_sum = models.PositiveBigIntegerField(default=0)
    max_ms = models.PositiveIntegerField(default=0)
    avg_ms = models.FloatField(default=0.0)  # kept up to date by the upsert, indexed

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "calendar"], name="calendarhour_unique"),
        ]
        indexes = [models.Index(fields=["hour", "-avg_ms"], name="calendarhour_slow_idx")]


class StatusHour(models.Model):
    """The worst health status each hour and how many checks saw each status: the dashboard's
    7-day status history."""

    hour = models.DateTimeField(unique=True)
    worst_status = models.CharField(max_length=16)
    healthy_checks = models.PositiveIntegerField(default=0)
    degraded_checks = models.PositiveIntegerField(default=0)
    critical_checks = models.PositiveIntegerField(default=0)
