"""POST /webhooks/microsoft/: Graph change notifications and the validation handshake."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid

import pytest
from webhook_cases import GraphCases, change_item, counter, post_items

from apps.webhooks.models import OrphanChannel, WebhookNotification
from apps.webhooks.services.subscriptions import flags
from tests.support.factories import make_microsoft_calendar, make_subscription

URL = "/webhooks/microsoft/"




class TestMicrosoftReceiver(GraphCases):
    url = URL
    item = staticmethod(change_item)


@pytest.fixture
def subscription(user):
    return make_subscription(make_microsoft_calendar(user), "microsoft")


# --- Validation handshake --------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("url", [URL, URL + "lifecycle/"])
def test_the_validation_token_is_echoed_decoded_as_plain_text(client, url):
    query = "validationToken=Validation%3a+Testing+client+application+reachability+for" \
            "+subscription+Request-Id%3a+%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    response = client.post(f"{url}?{query}", data=b"", content_type="text/plain")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content.decode() == (
        "Validation: Testing client application reachability for subscription "
        "Request-Id: <script>alert(1)</script>")


@pytest.mark.django_db
def test_the_validation_token_is_echoed_even_when_switched_off(client, settings):
    settings.WEBHOOKS_ENABLED = False
    flags.set_runtime_switch(False)
    response = client.post(f"{URL}?validationToken=abc%20def", data=b"",
                           content_type="text/plain")
    assert (response.status_code, response.content) == (200, b"abc def")


@pytest.mark.django_db
def test_the_validation_handshake_does_not_touch_the_database(client,
                                                             django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.post(f"{URL}?validationToken=tok", data=b"",
                               content_type="text/plain")
    assert response.status_code == 200


# --- Malformed batches -----------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"value": {}}', b'"value"', b"",
                                  b'{"values": []}', b"[" * 100_000, b"\xff\xfe\x00"])
def test_a_body_that_is_not_a_value_list_is_a_400(client, body):
    response = client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400
    assert counter("microsoft", "invalid") == 1


@pytest.mark.django_db
def test_an_empty_batch_is_acknowledged(client):
    assert post_items(client, []).status_code == 202


# --- Items -----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_each_item_is_judged_on_its_own(client, subscription, caplog):
    caplog.set_level(logging.DEBUG)
    sub, secret = subscription
    forged_state = "forged-" + uuid.uuid4().hex
    unknown_id = str(uuid.uuid4())
    items = [
        change_item(sub.channel_id, secret, 1),
        change_item(sub.channel_id, forged_state, 2),
        change_item(unknown_id, "x", 3),
        {"subscriptionId": sub.channel_id, "clientState": secret},  # no changeType
        "not an object",
    ]
    response = post_items(client, items)
    assert response.status_code == 202
    row = WebhookNotification.objects.get()
    assert row.payload["resource"] == "Users/7c1/Events/AAMkAD1"
    assert counter("microsoft", "rejected") == 1
    assert counter("microsoft", "invalid") == 2
    assert OrphanChannel.objects.filter(channel_id=unknown_id).exists()
    assert "clientState mismatch" in caplog.text or "secret mismatch" in caplog.text
    assert forged_state not in caplog.text and secret not in caplog.text


@pytest.mark.django_db
def test_a_change_is_stored_without_its_client_state(client, subscription):
    sub, secret = subscription
    item = change_item(sub.channel_id, secret, 4, change="created")
    assert post_items(client, [item]).status_code == 202
    row = WebhookNotification.objects.get()
    assert (row.kind, row.resource_state, row.processing_status) == ("change", "created",
                                                                    "pending")
    assert "clientState" not in row.payload
    assert secret not in json.dumps(row.payload)
    expected = hashlib.sha256("|".join([sub.channel_id, "created", item["resource"],
                                        item["resourceData"]["@odata.etag"]]).encode())
    assert row.dedup_key == "microsoft:" + expected.hexdigest()


@pytest.mark.django_db
def test_the_same_change_repeated_in_one_batch_is_stored_once(client, subscription):
    sub, secret = subscription
    item = change_item(sub.channel_id, secret, 5)
    assert post_items(client, [item, item, item]).status_code == 202
    assert WebhookNotification.objects.count() == 1
    assert counter("microsoft", "duplicate") == 2


@pytest.mark.django_db
def test_a_new_etag_is_a_new_change(client, subscription):
    sub, secret = subscription
    post_items(client, [change_item(sub.channel_id, secret, 5, etag='W/"v1"')])
    post_items(client, [change_item(sub.channel_id, secret, 5, etag='W/"v2"')])
    assert WebhookNotification.objects.count() == 2


@pytest.mark.django_db
def test_changes_without_an_etag_are_never_merged(client, subscription):
    sub, secret = subscription
    items = []
    for _ in range(2):
        item = change_item(sub.channel_id, secret, 6)
        del item["resourceData"]["@odata.etag"], item["id"]
        items.append(item)
    post_items(client, items)
    assert WebhookNotification.objects.count() == 2


@pytest.mark.django_db
def test_a_batch_for_several_subscriptions_is_stored_in_one_go(client, user):
    calendar = make_microsoft_calendar(user)
    (first, first_state), (second, second_state) = (make_subscription(calendar, "microsoft"),
                                                    make_subscription(calendar, "microsoft"))
    items = [change_item(first.channel_id, first_state, 1),
             change_item(second.channel_id, second_state, 2),
             change_item(first.channel_id, first_state, 3)]
    assert post_items(client, items).status_code == 202
    assert WebhookNotification.objects.filter(subscription=first).count() == 2
    assert WebhookNotification.objects.filter(subscription=second).count() == 1
    first.refresh_from_db()
    assert first.last_notification_at is not None


@pytest.mark.django_db
def test_a_lifecycle_item_on_the_change_url_is_kept_as_lifecycle(client, subscription):
    sub, secret = subscription
    item = {"subscriptionId": sub.channel_id, "clientState": secret,
            "lifecycleEvent": "missed", "subscriptionExpirationDateTime": "2030-03-20T11:00Z"}
    assert post_items(client, [item]).status_code == 202
    row = WebhookNotification.objects.get()
    assert (row.kind, row.resource_state) == ("lifecycle", "missed")


@pytest.mark.django_db
def test_an_item_that_postgres_cannot_store_is_dropped_not_a_503(client, subscription):
    sub, secret = subscription
    bad = change_item(sub.channel_id, secret, 8)
    bad["resourceData"]["note"] = "nul \u0000 byte"
    raw = json.dumps({"value": [bad, change_item(sub.channel_id, secret, 9)]})
    raw = raw.replace('"nul', '"\\ud800 lone')  # and a lone surrogate
    response = client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 202
    assert WebhookNotification.objects.count() == 1
    assert counter("microsoft", "invalid") == 1


@pytest.mark.django_db
def test_a_batch_with_only_refused_items_is_limited_for_an_abusive_source(client, subscription,
                                                                          settings):
    settings.WEBHOOK_RATE_LIMIT_MAX_REQUESTS = 2
    sub, secret = subscription
    codes = [post_items(client, [change_item(str(uuid.uuid4()), "x", n)],
                        **{"X-Forwarded-For": "198.51.100.7"}).status_code for n in range(4)]
    assert codes == [202, 202, 429, 429]
    mixed = [change_item(str(uuid.uuid4()), "x", 9), change_item(sub.channel_id, secret, 9)]
    response = post_items(client, mixed, **{"X-Forwarded-For": "198.51.100.7"})
    assert response.status_code == 202
    assert WebhookNotification.objects.count() == 1
