"""Connected accounts, their calendars and the events mirrored from the provider."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from apps.calendars.fields import EncryptedTextField, Undecryptable

log = logging.getLogger(__name__)
TOKENS_UNREADABLE = ("stored OAuth tokens cannot be decrypted with any FIELD_ENCRYPTION_KEY: "
                     "reconnect the account")


class Provider(models.TextChoices):
    GOOGLE = "google", "Google"
    MICROSOFT = "microsoft", "Microsoft"


class CalendarAccount(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        REAUTH_REQUIRED = "reauth_required", "Re-authorization required"
        DISABLED = "disabled", "Disabled"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendar_accounts"
    )
    provider = models.CharField(max_length=16, choices=Provider.choices)
    email = models.EmailField()
    access_token = EncryptedTextField(blank=True, default="")
    refresh_token = EncryptedTextField(blank=True, default="")
    token_expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    # Per-account backoff after throttling: other accounts keep syncing meanwhile.
    backoff_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Case-insensitively, as every lookup is (Ann@x.com and ann@x.com are one mailbox).
            models.UniqueConstraint("provider", Lower("email"), name="account_provider_email_ci"),
            models.CheckConstraint(
                condition=Q(provider__in=Provider.values), name="account_provider_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["active", "reauth_required", "disabled"]),
                name="account_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["status"], name="account_status_idx")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.email}"

    @classmethod
    def from_db(cls, db, field_names, values):
        account = super().from_db(db, field_names, values)
        if any(isinstance(account.__dict__.get(name), Undecryptable)
               for name in ("access_token", "refresh_token")):
            account._drop_unreadable_tokens(db)
        return account

    def _drop_unreadable_tokens(self, db: str) -> None:
        """Tokens no configured key decrypts (a key removed before rotation, or a host with a
        wrong key): the account waits for its user to reconnect, said once in the log. The
        stored tokens are left as they are: restoring the right key brings them back."""
        if self.__dict__.get("status") == self.Status.DISABLED or (
                self.__dict__.get("status") == self.Status.REAUTH_REQUIRED
                and self.__dict__.get("last_error") == TOKENS_UNREADABLE):
            return
        changes = {"status": self.Status.REAUTH_REQUIRED, "last_error": TOKENS_UNREADABLE}
        type(self)._base_manager.using(db).filter(pk=self.pk).update(
            updated_at=timezone.now(), **changes)
        self.__dict__.update({k: v for k, v in changes.items() if k in self.__dict__})
        log.error("%s account %s: %s", self.__dict__.get("provider", "?"), self.pk,
                  TOKENS_UNREADABLE)


class Calendar(models.Model):
    calendar_account = models.ForeignKey(
        CalendarAccount, on_delete=models.CASCADE, related_name="calendars"
    )
    provider_calendar_id = models.CharField(max_length=512)
    name = models.CharField(max_length=255, blank=True, default="")
    sync_enabled = models.BooleanField(default=True)
    # Set by an operator (admin) or by the health monitor's automatic responses; the monitor
    # records the ones it turned on so that it only ever turns those off again.
    fallback_polling_enabled = models.BooleanField(default=False)
    # Google syncToken or Graph deltaLink (a full URL, hence TextField).
    sync_cursor = models.TextField(blank=True, default="")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.TextField(blank=True, default="")
    sync_failure_count = models.PositiveIntegerField(default=0)
    # Earliest time the next poll/retry may run (jittered schedule and backoff).
    next_sync_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["calendar_account", "provider_calendar_id"], name="calendar_account_pcid"
            )
        ]
        indexes = [
            models.Index(fields=["sync_enabled", "last_synced_at"], name="calendar_sync_idx"),
        ]

    def __str__(self) -> str:
        return self.name or self.provider_calendar_id

    @property
    def provider(self) -> str:
        return self.calendar_account.provider


class Event(models.Model):
    class Status(models.TextChoices):
        CONFIRMED = "confirmed", "Confirmed"
        TENTATIVE = "tentative", "Tentative"
        # A cancelled instance of a live recurring series (hidden, the series stays).
        CANCELLED = "cancelled", "Cancelled"

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="events")
    provider_event_id = models.CharField(max_length=1024)
    etag = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONFIRMED)
    summary = models.TextField(blank=True, default="")
    location = models.TextField(blank=True, default="")
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    all_day = models.BooleanField(default=False)
    recurring_event_id = models.CharField(max_length=1024, blank=True, default="")
    raw = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["calendar", "provider_event_id"], name="event_calendar_provider_id"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["confirmed", "tentative", "cancelled"]),
                name="event_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.summary or self.provider_event_id


class SkippedEvent(models.Model):
    """An event the sync could not apply (bad date, oversized field): recorded, not blocking."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="skipped_events")
    provider_event_id = models.CharField(max_length=1024)
    error = models.TextField()
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
