"""The database itself refuses impossible rows."""

import pytest
from django.db import IntegrityError, transaction

from apps.calendars.models import Calendar, CalendarAccount, Event
from apps.webhooks.models import WebhookNotification, WebhookSubscription

pytestmark = pytest.mark.django_db


def _refused(fn) -> bool:
    try:
        with transaction.atomic():
            fn()
    except IntegrityError:
        return True
    return False


def test_an_event_id_is_unique_per_calendar(google_calendar):
    Event.objects.create(calendar=google_calendar, provider_event_id="e1")
    assert _refused(lambda: Event.objects.create(calendar=google_calendar, provider_event_id="e1"))


def test_a_calendar_is_unique_per_account(google_calendar):
    assert _refused(lambda: Calendar.objects.create(
        calendar_account=google_calendar.calendar_account, provider_calendar_id="primary"))


def test_unknown_choices_are_refused(user, google_calendar):
    assert _refused(lambda: CalendarAccount.objects.create(
        user=user, provider="yahoo", email="x@example.com"))
    assert _refused(lambda: CalendarAccount.objects.create(
        user=user, provider="google", email="y@example.com", status="sleeping"))
    assert _refused(lambda: WebhookSubscription.objects.create(
        calendar=google_calendar, provider="google", channel_id="c", status="zombie"))


def test_a_notification_dedup_key_is_unique(google_calendar):
    sub = WebhookSubscription.objects.create(
        calendar=google_calendar, provider="google", channel_id="c1")
    WebhookNotification.objects.create(
        subscription=sub, provider="google", resource_state="exists", dedup_key="g:c1:5")
    assert _refused(lambda: WebhookNotification.objects.create(
        subscription=sub, provider="google", resource_state="exists", dedup_key="g:c1:5"))
    assert _refused(lambda: WebhookNotification.objects.create(
        subscription=sub, provider="google", resource_state="exists", dedup_key="g:c1:6",
        processing_status="lost"))


def test_a_channel_id_is_unique(google_calendar):
    WebhookSubscription.objects.create(calendar=google_calendar, provider="google", channel_id="x")
    assert _refused(lambda: WebhookSubscription.objects.create(
        calendar=google_calendar, provider="google", channel_id="x"))
