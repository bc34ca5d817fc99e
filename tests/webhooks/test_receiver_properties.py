"""Whatever arrives at a receiver — any headers, query string, body — the answer is a
deliberate one: never a 500, never a traceback, never a stored row without the secret."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.webhooks.models import WebhookNotification
from apps.webhooks.services.ttl_cache import reset_all
from tests.support.factories import make_microsoft_calendar, make_subscription

pytestmark = pytest.mark.django_db

ENDPOINTS = ["/webhooks/google/", "/webhooks/microsoft/", "/webhooks/microsoft/lifecycle/",
             "/webhooks/unknown/path/"]
ANSWERS = {200, 202, 400, 403, 404, 405, 413, 429}
EXAMPLES = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# WSGI hands header values over as latin-1 text.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)
header_name = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,30}", fullmatch=True)
GOOGLE_NAMES = ["X-Goog-Channel-ID", "X-Goog-Channel-Token", "X-Goog-Resource-ID",
                "X-Goog-Resource-State", "X-Goog-Message-Number", "X-Goog-Resource-URI",
                "X-Forwarded-For", "Content-Type"]
headers = st.dictionaries(st.one_of(st.sampled_from(GOOGLE_NAMES), header_name), header_text,
                          max_size=8)
query = st.one_of(
    st.just(""),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),
    st.builds(lambda v: "validationToken=" + v, st.text(max_size=40)),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12,
)


def item_like(subscription_id: str, secret: str):
    """Items that are partly right: a known subscription, sometimes the right secret."""
    return st.fixed_dictionaries(
        {"subscriptionId": st.sampled_from([subscription_id, "nope"]) | st.text(max_size=8)},
        optional={
            "clientState": st.sampled_from([secret, "wrong"]) | json_values,
            "changeType": st.sampled_from(["created", "updated", "deleted"]) | json_values,
            "lifecycleEvent": st.sampled_from(["missed", "subscriptionRemoved"]) | json_values,
            "resource": st.text(max_size=30) | json_values,
            "resourceData": json_values,
            "id": json_values,
        },
    )


def bodies(subscription_id: str, secret: str):
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.lists(item_like(subscription_id, secret) | json_values, max_size=5).map(
            lambda items: json.dumps({"value": items}).encode()),
    )


def assert_deliberate(response, secret: str) -> None:
    body = response.content.decode("utf-8", "replace")
    assert response.status_code in ANSWERS, (response.status_code, body[:200])
    assert "Traceback" not in body
    assert secret not in body or response.status_code == 200  # only a validation echo


@pytest.fixture
def graph_subscription(user):
    reset_all()
    return make_subscription(make_microsoft_calendar(user), "microsoft")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_arbitrary_requests_get_a_deliberate_answer(path, graph_subscription):
    sub, secret = graph_subscription
    client = Client(raise_request_exception=True)

    @EXAMPLES
    @given(headers=headers, query=query, body=bodies(sub.channel_id, secret),
           method=st.sampled_from(["post", "post", "post", "put", "get"]))
    def check(headers, query, body, method):
        url = f"{path}?{query}" if query else path
        if method == "get":
            response = client.get(url, headers=headers)
        else:
            response = getattr(client, method)(url, data=body,
                                               content_type="application/json",
                                               headers=headers)
        assert_deliberate(response, secret)

    check()
    for row in WebhookNotification.objects.all():
        assert secret not in json.dumps(row.payload) + json.dumps(row.headers)


def test_arbitrary_google_headers_on_a_known_channel(google_calendar):
    reset_all()
    sub, token = make_subscription(google_calendar, "google", "active", "res-1")
    client = Client(raise_request_exception=True)
    base = {"X-Goog-Channel-ID": sub.channel_id, "X-Goog-Channel-Token": token,
            "X-Goog-Resource-ID": "res-1", "X-Goog-Resource-State": "exists",
            "X-Goog-Message-Number": "5"}

    @EXAMPLES
    @given(changes=st.dictionaries(st.sampled_from(sorted(base) + ["X-Goog-Resource-URI"]),
                                   header_text, max_size=3))
    def check(changes):
        response = client.post("/webhooks/google/", data=b"", content_type="text/plain",
                               headers={**base, **changes})
        assert_deliberate(response, token)

    check()
    for row in WebhookNotification.objects.all():
        assert token not in json.dumps(row.headers)


@pytest.mark.parametrize("method, path", [
    ("post", "/webhooks/health/"), ("put", "/webhooks/health/"),
    ("get", "/webhooks/google/"), ("get", "/webhooks/microsoft/lifecycle/"),
    ("post", "/webhooks/"), ("post", "/webhooks/google"), ("get", "/webhooks/nothing/here/"),
    ("delete", "/webhooks/microsoft/"),
])
def test_anything_else_under_webhooks_is_405_even_with_csrf_enforced(method, path):
    response = getattr(Client(enforce_csrf_checks=True), method)(path)
    assert response.status_code == 405


def test_the_monitoring_urls_under_webhooks_are_not_swallowed(client):
    # Mounted before the webhooks include: they answer for themselves (here: a login redirect
    # or a staff-only refusal), never the receivers' 405.
    assert client.get("/webhooks/monitoring/health/").status_code != 405
