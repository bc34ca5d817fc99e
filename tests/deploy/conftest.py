"""Fixtures for the deployment tests: a subscription with a known token, real processes."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def make_subscription(django_user_model) -> Callable[..., tuple[object, str]]:
    """A Google calendar with an active channel; returns ``(subscription, raw token)``."""
    from apps.calendars.models import Calendar, CalendarAccount
    from apps.webhooks.models import WebhookSubscription

    def make(email: str = "ops@example.com", channel_id: str = "deploy-channel-1"):
        user, _ = django_user_model.objects.get_or_create(username=email, email=email)
        account, _ = CalendarAccount.objects.get_or_create(
            user=user, provider="google", email=email,
            defaults={"access_token": "ya29.deploy", "refresh_token": "1//deploy"},
        )
        calendar, _ = Calendar.objects.get_or_create(
            calendar_account=account, provider_calendar_id=email, defaults={"name": email}
        )
        sub = WebhookSubscription(calendar=calendar, provider="google", channel_id=channel_id,
                                  resource_id=f"res-{channel_id}", status="active",
                                  resource_uri="https://www.googleapis.com/calendar/v3/x")
        token = sub.issue_token()
        sub.save()
        return sub, token

    return make
