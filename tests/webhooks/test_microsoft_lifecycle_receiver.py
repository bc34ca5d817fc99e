"""POST /webhooks/microsoft/lifecycle/: Graph lifecycle notifications, stored for the worker."""

from __future__ import annotations

import hashlib

import pytest
from webhook_cases import GraphCases, counter, post_items

from apps.webhooks.models import WebhookNotification
from tests.support.factories import make_microsoft_calendar, make_subscription

URL = "/webhooks/microsoft/lifecycle/"
EVENTS = ["reauthorizationRequired", "subscriptionRemoved", "missed"]


def lifecycle_item(subscription_id, client_state, n=1, event="reauthorizationRequired") -> dict:
    item = {
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": f"2030-03-{10 + n % 18:02d}T18:23:45.9356913Z",
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "lifecycleEvent": event,
    }
    if client_state is not None:
        item["clientState"] = client_state
    return item




class TestMicrosoftLifecycleReceiver(GraphCases):
    url = URL
    item = staticmethod(lifecycle_item)


@pytest.fixture
def subscription(user):
    return make_subscription(make_microsoft_calendar(user), "microsoft")


@pytest.mark.django_db
@pytest.mark.parametrize("event", EVENTS)
def test_each_lifecycle_event_is_stored_for_the_worker(client, subscription, event):
    sub, secret = subscription
    item = lifecycle_item(sub.channel_id, secret, 1, event)
    assert post_items(client, [item], URL).status_code == 202
    row = WebhookNotification.objects.get()
    assert (row.kind, row.resource_state, row.processing_status) == ("lifecycle", event,
                                                                    "pending")
    assert "clientState" not in row.payload
    expected = hashlib.sha256("|".join([sub.channel_id, event,
                                        item["subscriptionExpirationDateTime"]]).encode())
    assert row.dedup_key == "microsoft:lifecycle:" + expected.hexdigest()


@pytest.mark.django_db
def test_a_repeated_lifecycle_event_is_stored_once(client, subscription):
    sub, secret = subscription
    item = lifecycle_item(sub.channel_id, secret, 2, "missed")
    post_items(client, [item], URL)
    assert post_items(client, [item], URL).status_code == 202
    assert WebhookNotification.objects.count() == 1


@pytest.mark.django_db
def test_the_same_event_for_a_later_expiry_is_new(client, subscription):
    sub, secret = subscription
    post_items(client, [lifecycle_item(sub.channel_id, secret, 1, "reauthorizationRequired")], URL)
    post_items(client, [lifecycle_item(sub.channel_id, secret, 2, "reauthorizationRequired")], URL)
    assert WebhookNotification.objects.count() == 2


@pytest.mark.django_db
def test_an_item_id_distinguishes_otherwise_equal_events(client, subscription):
    sub, secret = subscription
    first = {**lifecycle_item(sub.channel_id, secret, 1, "missed"), "id": "a"}
    second = {**first, "id": "b"}
    post_items(client, [first, second], URL)
    assert WebhookNotification.objects.count() == 2


@pytest.mark.django_db
def test_a_change_notification_is_not_valid_here(client, subscription):
    sub, secret = subscription
    change = {"subscriptionId": sub.channel_id, "clientState": secret, "changeType": "updated",
              "resource": "Users/1/Events/2"}
    assert post_items(client, [change], URL).status_code == 202
    assert WebhookNotification.objects.count() == 0
    assert counter("microsoft", "invalid") == 1


@pytest.mark.django_db
def test_a_malformed_lifecycle_event_name_is_dropped(client, subscription):
    sub, secret = subscription
    item = lifecycle_item(sub.channel_id, secret, 1, event="x" * 65)
    assert post_items(client, [item], URL).status_code == 202
    assert WebhookNotification.objects.count() == 0
