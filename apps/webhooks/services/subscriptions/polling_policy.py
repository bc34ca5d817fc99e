"""Which calendars healthy push covers, and which push subscriptions have gone silent.

The webhooks half of fallback polling (``apps.calendars.services.polling`` does the polling and
must not import webhooks). A calendar is covered only when ALL of these hold: webhooks are
switched on (deploy setting and runtime kill switch), the calendar is in the rollout, nobody
asked for fallback polling on it, its account is usable, and it has an active subscription that
has not expired. Anything else — suspended, failed, expired, stopped or missing — is polled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.calendars.models import Calendar, CalendarAccount
from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions import flags

log = logging.getLogger(__name__)


@dataclass
class PushCoverage:
    """A predicate for ``poll_due_calendars(is_covered=...)``, built from one snapshot of the
    subscriptions so a pass over thousands of calendars costs two queries, not thousands."""

    webhooks_on: bool
    healthy_calendar_ids: set[int] = field(default_factory=set)

    def __call__(self, calendar: Calendar) -> bool:
        return (
            self.webhooks_on
            and calendar.pk in self.healthy_calendar_ids
            and not calendar.fallback_polling_enabled
            and calendar.calendar_account.status == CalendarAccount.Status.ACTIVE
            and flags.calendar_in_rollout(calendar)
        )


def push_coverage(now: datetime | None = None) -> PushCoverage:
    now = now or timezone.now()
    if not flags.webhooks_enabled():
        return PushCoverage(webhooks_on=False)
    ids = set(
        WebhookSubscription.objects.live(now).values_list("calendar_id", flat=True)
    )
    return PushCoverage(webhooks_on=True, healthy_calendar_ids=ids)


def silent_subscriptions(now: datetime | None = None) -> list[WebhookSubscription]:
    """Active, unexpired subscriptions with no notification for longer than
    WEBHOOK_SILENT_SUBSCRIPTION_SECONDS (counted from creation when none ever came).

    A quiet calendar is not proof of a broken channel, so these are flagged (logged) and their
    calendars synced; they are not torn down here (that is subscription maintenance's call).
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_SILENT_SUBSCRIPTION_SECONDS)
    quiet = (
        Q(last_notification_at__lt=cutoff)
        | Q(last_notification_at__isnull=True, created_at__lt=cutoff)
    )
    subs = list(
        WebhookSubscription.objects.live(now).filter(quiet, calendar__sync_enabled=True)
        .only("id", "calendar_id", "provider", "last_notification_at")
    )
    for sub in subs:
        log.warning(
            "silent subscription %s (%s, calendar %s): no notification since %s",
            sub.pk, sub.provider, sub.calendar_id, sub.last_notification_at or "creation",
        )
    return subs
