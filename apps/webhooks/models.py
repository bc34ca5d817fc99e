"""Push subscriptions, the inbound notification queue, and the small records around them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.calendars.models import Calendar, Provider


def _digest(raw: str) -> str:
    # Tokens are 256-bit random values, so a plain SHA-256 cannot be brute-forced.
    return hashlib.sha256(raw.encode()).hexdigest()


SUBSCRIPTION_STATUSES = ["pending", "active", "expired", "failed", "suspended", "stopped"]
NOTIFICATION_STATUSES = ["pending", "processing", "completed", "failed", "ignored"]


# Consecutive failures from which a subscription still nominally working counts as failing.
FAILING_FAILURE_COUNT = 5


class SubscriptionQuerySet(models.QuerySet):
    # Failed or suspended (suspension is the worst failure there is), or not stopped with
    # FAILING_FAILURE_COUNT or more consecutive failures: what health counts as failed.
    FAILING = (Q(status__in=("failed", "suspended"))
               | (Q(failure_count__gte=FAILING_FAILURE_COUNT) & ~Q(status="stopped")))

    # Notifications for subscriptions in these states are queued; any other state is ignored.
    ACCEPTING = ("pending", "active")

    @staticmethod
    def live_q(now: datetime) -> Q:
        """Active and not past its expiry: the provider still sends its notifications."""
        return Q(status="active") & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))

    def failing(self) -> SubscriptionQuerySet:
        return self.filter(self.FAILING)

    def live(self, now: datetime) -> SubscriptionQuerySet:
        return self.filter(self.live_q(now))

    def accepting(self) -> SubscriptionQuerySet:
        return self.filter(status__in=self.ACCEPTING)


class NotificationQuerySet(models.QuerySet):
    # Received and not yet finished: what the worker still owes.
    WAITING = ("pending", "processing")

    def waiting(self) -> NotificationQuerySet:
        return self.filter(processing_status__in=self.WAITING)

    def due(self, now: datetime) -> NotificationQuerySet:
        """Pending rows whose (retry) time has come."""
        return self.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
                           processing_status="pending")


class WebhookSubscription(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        FAILED = "failed", "Failed"
        SUSPENDED = "suspended", "Suspended"
        STOPPED = "stopped", "Stopped"

    calendar = models.ForeignKey(
        Calendar, on_delete=models.CASCADE, related_name="webhook_subscriptions"
    )
    provider = models.CharField(max_length=16, choices=Provider.choices)
    # Google channel id or Graph subscription id.
    channel_id = models.CharField(max_length=255, unique=True)
    resource_id = models.CharField(max_length=255, blank=True, default="")
    resource_uri = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField(null=True, blank=True)
    failure_count = models.PositiveIntegerField(default=0)
    last_notification_at = models.DateTimeField(null=True, blank=True)
    last_message_number = models.BigIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # SHA-256 of the Google channel token / Graph clientState; the secret itself is never kept.
    token_digest = models.CharField(max_length=64, blank=True, default="", editable=False)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # When maintenance should renew/replace it (jittered), and when a failed repair may retry.
    renew_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    # During a Google replacement the old channel points at its successor until stopped.
    replaced_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=SUBSCRIPTION_STATUSES), name="subscription_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(provider__in=Provider.values), name="subscription_provider_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="sub_status_expires_idx"),
            models.Index(
                fields=["status", "last_notification_at"], name="sub_status_lastnotif_idx"
            ),
            models.Index(fields=["failure_count"], name="sub_failure_count_idx"),
            models.Index(fields=["status", "renew_at"], name="sub_status_renew_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.channel_id} ({self.status})"

    def issue_token(self) -> str:
        """Make a new shared secret, keep only its digest, and return it (once)."""
        raw = secrets.token_urlsafe(32)
        self.token_digest = _digest(raw)
        return raw

    def matches_token(self, raw: str | None) -> bool:
        """Constant-time comparison of a presented secret with the stored digest."""
        if not raw or not self.token_digest:
            return False
        return hmac.compare_digest(_digest(raw), self.token_digest)


class WebhookNotification(models.Model):
    """The raw inbound notification; also the worker's queue (``processing_status``)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        IGNORED = "ignored", "Ignored"

    class Kind(models.TextChoices):
        CHANGE = "change", "Change"
        LIFECYCLE = "lifecycle", "Lifecycle"

    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="notifications"
    )
    provider = models.CharField(max_length=16, choices=Provider.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CHANGE)
    received_at = models.DateTimeField(default=timezone.now)
    # Google resource state, Graph changeType, or Graph lifecycleEvent.
    resource_state = models.CharField(max_length=64)
    message_number = models.BigIntegerField(null=True, blank=True)
    dedup_key = models.CharField(max_length=255, unique=True)
    headers = models.JSONField(default=dict, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    processing_status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=128, blank=True, default="")
    processed_at = models.DateTimeField(null=True, blank=True)
    processing_time_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # Set once the subscription manager has acted on a lifecycle row (reauthorized /
    # recreated): a retried or reclaimed row then only runs its catch-up sync, never the
    # action a second time.
    lifecycle_handled_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(processing_status__in=NOTIFICATION_STATUSES),
                name="notification_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["change", "lifecycle"]), name="notification_kind_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["received_at"], name="notif_received_idx"),
            models.Index(fields=["processing_status", "received_at"], name="notif_status_recv_idx"),
            models.Index(
                fields=["processing_status", "next_attempt_at"], name="notif_status_next_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.resource_state} #{self.pk} ({self.processing_status})"


class OrphanChannelQuerySet(models.QuerySet):
    def open(self) -> OrphanChannelQuerySet:
        return self.filter(status=OrphanChannel.Status.OPEN)

    def seen_repeatedly(self) -> OrphanChannelQuerySet:
        """Notified more than once: a forged id is usually seen once, a stray channel keeps
        notifying (Google on every change, Graph retries)."""
        return self.filter(hits__gte=2)


class OrphanChannel(models.Model):
    """A channel/subscription that notified us but that we do not know: stop it if we can."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        STOPPED = "stopped", "Stopped"
        ABANDONED = "abandoned", "Left to expire"

    provider = models.CharField(max_length=16, choices=Provider.choices)
    channel_id = models.CharField(max_length=255)
    resource_id = models.CharField(max_length=255, blank=True, default="")
    resource_uri = models.TextField(blank=True, default="")
    # Graph's tenantId: with resource_uri ("Users/{id}/...") it names the mailbox notified.
    tenant_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    hits = models.PositiveIntegerField(default=1)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = OrphanChannelQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "channel_id"], name="orphan_provider_channel"
            )
        ]
        indexes = [models.Index(fields=["status"], name="orphan_status_idx")]


class WebhookCounter(models.Model):
    """Hourly counts of what is never stored as a notification (rejected, orphan, ignored...)."""

    bucket = models.DateTimeField()  # start of the hour
    provider = models.CharField(max_length=16)
    kind = models.CharField(max_length=32)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bucket", "provider", "kind"], name="counter_unique")
        ]


class RuntimeSetting(models.Model):
    """Switches changed at run time (kill switch, monitor cadence): seen by every process."""

    key = models.CharField(max_length=64, unique=True)
    value = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True, default="")

    def __str__(self) -> str:
        return self.key


class WorkerHeartbeat(models.Model):
    """One row per worker process, refreshed every loop: the health monitor reads its age."""

    worker_id = models.CharField(max_length=128, unique=True)
    hostname = models.CharField(max_length=255, blank=True, default="")
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_count = models.PositiveBigIntegerField(default=0)
    stopped_at = models.DateTimeField(null=True, blank=True)
