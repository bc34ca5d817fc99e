"""Every receiver request costs bounded work whatever its body: a Graph batch larger than the
configured bound is refused with 413 before its items are looked at, refusals are logged as one
summary line per request, and the refusal counters stay exact."""

from __future__ import annotations

import json
import logging
import time

import pytest
from webhook_cases import change_item, counter

from tests.support.factories import make_microsoft_calendar, make_subscription

URL = "/webhooks/microsoft/"

pytestmark = pytest.mark.django_db


def post_body(client, body: bytes):
    started = time.perf_counter()
    response = client.post(URL, data=body, content_type="application/json")
    return response, time.perf_counter() - started


def test_a_batch_above_the_bound_is_refused_with_413_within_a_second(client, settings):
    items = [{"subscriptionId": f"s{i}", "clientState": "x"} for i in range(20_000)]
    body = json.dumps({"value": items}, separators=(",", ":"))
    assert len(body) < settings.WEBHOOK_MAX_BODY_BYTES

    response, took = post_body(client, body.encode())

    assert response.status_code == 413
    assert took < 1.0
    assert counter("microsoft", "invalid") == 1  # one refused request


@pytest.mark.parametrize("item", [b"1", b"{}", b"[]", b'"x"', b"null"])
def test_any_body_within_the_size_limit_is_answered_within_a_second(client, settings, item):
    count = (settings.WEBHOOK_MAX_BODY_BYTES - 16) // (len(item) + 1)
    body = b'{"value":[' + b",".join([item] * count) + b"]}"

    response, took = post_body(client, body)

    assert response.status_code == 413
    assert took < 1.0


def test_the_bound_is_a_setting_and_a_batch_at_the_bound_is_accepted(client, settings, user):
    settings.WEBHOOK_MAX_BATCH_ITEMS = 5
    subscription, secret = make_subscription(make_microsoft_calendar(user), "microsoft")
    items = [change_item(subscription.channel_id, secret, n) for n in range(5)]

    assert post_body(client, json.dumps({"value": items}).encode())[0].status_code == 202
    items.append(change_item(subscription.channel_id, secret, 6))
    assert post_body(client, json.dumps({"value": items}).encode())[0].status_code == 413


def test_a_batch_of_forged_items_logs_one_summary_line_with_exact_counts(client, user, caplog):
    subscription, _ = make_subscription(make_microsoft_calendar(user), "microsoft")
    forged = [change_item(subscription.channel_id, "wrong", n) for n in range(600)]
    unknown = [change_item(f"unknown-{n}", "whatever", n) for n in range(30)]
    malformed = [{"subscriptionId": 7}] * 5
    caplog.set_level(logging.INFO, logger="apps.webhooks.receivers")

    response = client.post(URL, data=json.dumps({"value": forged + unknown + malformed}),
                           content_type="application/json")

    assert response.status_code == 202
    lines = [r for r in caplog.records if r.name == "apps.webhooks.receivers"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    message = lines[0].getMessage()
    assert "shared secret mismatch: 600" in message
    assert "unknown channel: 30" in message
    assert "missing or malformed subscriptionId: 5" in message
    assert lines[0].levelno == logging.WARNING
    assert counter("microsoft", "rejected") == 600
    assert counter("microsoft", "orphan") == 30
    assert counter("microsoft", "invalid") == 5


def test_a_full_batch_of_forged_items_is_answered_within_a_second(client, user, settings):
    subscription, _ = make_subscription(make_microsoft_calendar(user), "microsoft")
    items = [change_item(subscription.channel_id, "wrong", n)
             for n in range(settings.WEBHOOK_MAX_BATCH_ITEMS)]

    response, took = post_body(client, json.dumps({"value": items}).encode())

    assert response.status_code == 202
    assert took < 1.0
    assert counter("microsoft", "rejected") == settings.WEBHOOK_MAX_BATCH_ITEMS


def test_an_oversized_validation_token_is_not_echoed(client):
    response = client.post(f"{URL}?validationToken={'A' * 100_000}")
    assert response.status_code == 400
    assert len(response.content) < 200
