"""POST /webhooks/google/: Google Calendar push notifications (headers only, no body)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import time_machine
from webhook_cases import RESOURCE_ID, WebhookCases, counter, google_headers, post

from apps.webhooks.models import WebhookNotification
from tests.support.factories import make_subscription

URL = "/webhooks/google/"


class TestGoogleReceiver(WebhookCases):
    provider = "google"
    url = URL
    ok_status = 200
    forged_status = 403
    unknown_status = 404

    @pytest.fixture
    def calendar(self, google_calendar):
        return google_calendar

    def subscription_resource_id(self) -> str:
        return RESOURCE_ID

    def send(self, client, subscription, secret, n=1, **extra):
        return post(client, {**google_headers(subscription.channel_id, secret, n), **extra})

    def send_unknown(self, client, channel_id, n=1, **extra):
        return post(client, {**google_headers(channel_id, "whatever", n), **extra})

    def valid_headers(self, subscription, secret) -> dict:
        return google_headers(subscription.channel_id, secret)




@pytest.fixture
def subscription(google_calendar):
    return make_subscription(google_calendar, "google", "active", RESOURCE_ID)


@pytest.mark.django_db
@pytest.mark.parametrize("missing", ["X-Goog-Channel-ID", "X-Goog-Resource-ID",
                                     "X-Goog-Resource-State", "X-Goog-Message-Number"])
def test_a_missing_required_header_is_a_400(client, subscription, missing):
    sub, token = subscription
    headers = google_headers(sub.channel_id, token)
    del headers[missing]
    response = post(client, headers)
    assert response.status_code == 400
    assert missing in response.content.decode()
    assert WebhookNotification.objects.count() == 0
    assert counter("google", "invalid") == 1


@pytest.mark.django_db
@pytest.mark.parametrize("header, value", [
    ("X-Goog-Message-Number", "twelve"),
    ("X-Goog-Message-Number", "-3"),
    ("X-Goog-Resource-State", "deleted"),
    ("X-Goog-Channel-ID", "x" * 65),
    ("X-Goog-Channel-ID", "has space"),
])
def test_a_malformed_required_header_is_a_400(client, subscription, header, value):
    sub, token = subscription
    response = post(client, {**google_headers(sub.channel_id, token), header: value})
    assert response.status_code == 400
    assert WebhookNotification.objects.count() == 0


@pytest.mark.django_db
def test_a_different_resource_id_is_refused(client, subscription):
    sub, token = subscription
    response = post(client, google_headers(sub.channel_id, token, resource_id="other-resource"))
    assert response.status_code == 403
    assert WebhookNotification.objects.count() == 0
    assert counter("google", "rejected") == 1


@pytest.mark.django_db
def test_a_notification_is_stored_with_its_headers_but_never_the_token(client, subscription):
    sub, token = subscription
    assert post(client, google_headers(sub.channel_id, token, n=42)).status_code == 200
    row = WebhookNotification.objects.get()
    assert row.dedup_key == f"google:{sub.channel_id}:42"
    assert (row.kind, row.resource_state, row.message_number) == ("change", "exists", 42)
    assert row.headers["X-Goog-Resource-ID"] == RESOURCE_ID
    assert "X-Goog-Channel-Token" not in row.headers
    assert token not in str(row.headers)


@pytest.mark.django_db
def test_not_exists_is_queued_like_exists(client, subscription):
    sub, token = subscription
    assert post(client, google_headers(sub.channel_id, token, state="not_exists")).status_code \
        == 200
    assert WebhookNotification.objects.get().resource_state == "not_exists"


@pytest.mark.django_db
def test_sync_confirms_a_pending_channel_and_queues_nothing(client, google_calendar):
    # The watch call has not returned yet: no resource id stored.
    sub, token = make_subscription(google_calendar, "google", "pending", resource_id="")
    response = post(client, google_headers(sub.channel_id, token, n=1, state="sync"))
    assert response.status_code == 200
    sub.refresh_from_db()
    assert sub.status == "active" and sub.confirmed_at is not None
    assert WebhookNotification.objects.count() == 0


@pytest.mark.django_db
def test_a_second_sync_keeps_the_first_confirmation(client, subscription):
    sub, token = subscription
    post(client, google_headers(sub.channel_id, token, state="sync"))
    sub.refresh_from_db()
    first = sub.confirmed_at
    post(client, google_headers(sub.channel_id, token, state="sync"))
    sub.refresh_from_db()
    assert sub.confirmed_at == first and sub.status == "active"


@pytest.mark.django_db
def test_sync_for_a_stopped_channel_does_not_revive_it(client, google_calendar):
    sub, token = make_subscription(google_calendar, "google", "stopped", RESOURCE_ID)
    assert post(client, google_headers(sub.channel_id, token, state="sync")).status_code == 200
    sub.refresh_from_db()
    assert sub.status == "stopped" and sub.confirmed_at is None


@pytest.mark.django_db
def test_a_notification_before_the_resource_id_is_known_is_accepted(client, google_calendar):
    sub, token = make_subscription(google_calendar, "google", "pending", resource_id="")
    assert post(client, google_headers(sub.channel_id, token, n=2)).status_code == 200
    assert WebhookNotification.objects.count() == 1


@pytest.mark.django_db
def test_an_older_message_after_a_newer_one_is_stored_but_the_number_never_goes_back(
        client, subscription):
    sub, token = subscription
    with time_machine.travel(datetime(2030, 5, 1, 12, 0, tzinfo=UTC), tick=False):
        assert post(client, google_headers(sub.channel_id, token, n=900)).status_code == 200
    # Another process with a clock a minute behind delivers an older message.
    with time_machine.travel(datetime(2030, 5, 1, 11, 59, tzinfo=UTC), tick=False):
        assert post(client, google_headers(sub.channel_id, token, n=850)).status_code == 200
    sub.refresh_from_db()
    assert sub.last_message_number == 900
    assert sub.last_notification_at == datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    assert sorted(WebhookNotification.objects.values_list("message_number", flat=True)) == [
        850, 900]
    with time_machine.travel(datetime(2030, 5, 1, 12, 5, tzinfo=UTC), tick=False):
        post(client, google_headers(sub.channel_id, token, n=901))
    sub.refresh_from_db()
    assert sub.last_message_number == 901
    assert sub.last_notification_at == datetime(2030, 5, 1, 12, 5, tzinfo=UTC)


@pytest.mark.django_db
def test_old_and_new_channels_of_one_calendar_both_deliver(client, google_calendar):
    # During a replacement the old channel stays active until it is stopped.
    old, old_token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    new, new_token = make_subscription(google_calendar, "google", "pending", "")
    assert post(client, google_headers(old.channel_id, old_token, n=5)).status_code == 200
    assert post(client, google_headers(new.channel_id, new_token, n=2)).status_code == 200
    assert WebhookNotification.objects.count() == 2


@pytest.mark.django_db
def test_the_token_of_another_channel_is_refused(client, google_calendar):
    first, first_token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    second, _ = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    assert post(client, google_headers(second.channel_id, first_token)).status_code == 403


@pytest.mark.django_db
def test_an_unknown_channel_keeps_its_resource_id_for_maintenance(client):
    channel_id = str(uuid.uuid4())
    assert post(client, google_headers(channel_id, "t", resource_id="res-77")).status_code == 404
    from apps.webhooks.models import OrphanChannel

    orphan = OrphanChannel.objects.get(channel_id=channel_id)
    assert orphan.resource_id == "res-77"
    assert orphan.resource_uri.startswith("https://www.googleapis.com/")
