"""A receiver process remembers recently read subscriptions to skip a lookup per notification,
but never answers differently because of it: every change to a subscription is honoured on
the very next notification."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from webhook_cases import RESOURCE_ID, counter, google_headers, post

from apps.webhooks.models import WebhookNotification, WebhookSubscription
from tests.support.factories import make_subscription

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.WEBHOOK_SUBSCRIPTION_CACHE_SECONDS = 60


def lookups(client, headers) -> tuple[int, int]:
    """(status, number of subscription SELECTs) for one notification."""
    with CaptureQueriesContext(connection) as queries:
        status = post(client, headers).status_code
    selects = [q for q in queries.captured_queries
               if q["sql"].startswith("SELECT") and "webhooks_webhooksubscription" in q["sql"]
               and "WITH sub" not in q["sql"]]
    return status, len(selects)


def test_a_known_channel_is_read_once_then_remembered(client, google_calendar):
    sub, token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    assert lookups(client, google_headers(sub.channel_id, token, 1)) == (200, 1)
    assert lookups(client, google_headers(sub.channel_id, token, 2)) == (200, 0)
    assert WebhookNotification.objects.count() == 2


def test_without_the_cache_every_notification_reads_the_subscription(client, google_calendar,
                                                                      settings):
    settings.WEBHOOK_SUBSCRIPTION_CACHE_SECONDS = 0
    sub, token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    assert lookups(client, google_headers(sub.channel_id, token, 1)) == (200, 1)
    assert lookups(client, google_headers(sub.channel_id, token, 2)) == (200, 1)


def test_unknown_channels_are_never_remembered(client, google_calendar):
    sub = WebhookSubscription(calendar=google_calendar, provider="google",
                              channel_id="chan-created-late", resource_id=RESOURCE_ID)
    assert post(client, google_headers(sub.channel_id, "t", 1)).status_code == 404
    token = sub.issue_token()
    sub.save()
    assert post(client, google_headers(sub.channel_id, token, 2)).status_code == 200


def test_a_channel_stopped_after_it_was_remembered_is_ignored_at_once(client, google_calendar):
    sub, token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    post(client, google_headers(sub.channel_id, token, 1))
    WebhookSubscription.objects.filter(pk=sub.pk).update(status="stopped")
    assert post(client, google_headers(sub.channel_id, token, 2)).status_code == 200
    assert WebhookNotification.objects.count() == 1
    assert counter("google", "ignored") == 1


def test_a_reissued_token_is_honoured_at_once(client, google_calendar):
    sub, old_token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    post(client, google_headers(sub.channel_id, old_token, 1))
    new_token = sub.issue_token()
    sub.save()
    # The old token still matches what this process remembered: the database says no.
    assert post(client, google_headers(sub.channel_id, old_token, 2)).status_code == 403
    assert post(client, google_headers(sub.channel_id, new_token, 3)).status_code == 200
    assert WebhookNotification.objects.count() == 2


def test_a_resource_id_learnt_after_it_was_remembered_is_enforced(client, google_calendar):
    sub, token = make_subscription(google_calendar, "google", "pending", resource_id="")
    post(client, google_headers(sub.channel_id, token, 1, resource_id="whatever"))
    WebhookSubscription.objects.filter(pk=sub.pk).update(resource_id=RESOURCE_ID)
    assert post(client, google_headers(sub.channel_id, token, 2,
                                       resource_id="whatever")).status_code == 403
    assert post(client, google_headers(sub.channel_id, token, 3)).status_code == 200


def test_a_subscription_recreated_under_the_same_channel_gets_the_notifications(
        client, google_calendar):
    old, old_token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    channel_id = old.channel_id
    post(client, google_headers(channel_id, old_token, 1))
    old.delete()
    new = WebhookSubscription(calendar=google_calendar, provider="google",
                              channel_id=channel_id, resource_id=RESOURCE_ID, status="active")
    new_token = new.issue_token()
    new.save()
    assert post(client, google_headers(channel_id, new_token, 2)).status_code == 200
    assert WebhookNotification.objects.get().subscription_id == new.pk


def test_sync_for_a_channel_stopped_after_it_was_remembered_does_not_revive_it(
        client, google_calendar):
    sub, token = make_subscription(google_calendar, "google", "pending", RESOURCE_ID)
    post(client, google_headers(sub.channel_id, token, 1))
    WebhookSubscription.objects.filter(pk=sub.pk).update(status="stopped")
    assert post(client, google_headers(sub.channel_id, token, 1, state="sync")).status_code \
        == 200
    sub.refresh_from_db()
    assert (sub.status, sub.confirmed_at) == ("stopped", None)
