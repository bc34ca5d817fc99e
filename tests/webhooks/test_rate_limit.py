"""Rate limiting of abusive webhook sources (rejected requests per address, requests per
unknown channel), on the shared cache, failing open when the cache is down."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import RequestFactory
from prometheus_client import REGISTRY
from webhook_cases import RESOURCE_ID, counter, google_headers, post

from apps.webhooks.models import OrphanChannel, WebhookNotification
from apps.webhooks.services.receiving import ratelimit
from tests.support.factories import make_subscription

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.WEBHOOK_RATE_LIMIT_MAX_REQUESTS = 3
    settings.WEBHOOK_RATE_LIMIT_WINDOW_SECONDS = 60


@pytest.fixture
def subscription(google_calendar):
    return make_subscription(google_calendar, "google", "active", RESOURCE_ID)


def from_ip(address: str) -> dict:
    return {"X-Forwarded-For": address}


def test_requests_for_an_unknown_channel_are_limited_whoever_sends_them(client):
    channel_id = str(uuid.uuid4())
    codes = [post(client, {**google_headers(channel_id, "t", n), **from_ip(f"192.0.2.{n}")})
             .status_code for n in range(1, 6)]
    assert codes == [404, 404, 404, 429, 429]
    # Once limited, the orphan is no longer written on every request.
    assert OrphanChannel.objects.get(channel_id=channel_id).hits == 3
    assert counter("google", "rate_limited") == 2


def test_malformed_requests_count_against_the_source(client):
    codes = [post(client, from_ip("203.0.113.5")).status_code for _ in range(5)]
    assert codes == [400, 400, 400, 429, 429]


def test_the_limit_resets_with_the_next_window(client, subscription):
    sub, _ = subscription
    start = datetime(2030, 1, 1, 12, 0, 5, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        codes = [post(client, {**google_headers(sub.channel_id, "bad", n),
                               **from_ip("203.0.113.6")}).status_code for n in range(4)]
        limited = post(client, {**google_headers(sub.channel_id, "bad", 9),
                                **from_ip("203.0.113.6")})
    assert codes == [403, 403, 403, 429]
    assert limited["Retry-After"] == "55"  # until the end of the 60 s window
    with time_machine.travel(start + timedelta(seconds=60), tick=False):
        again = post(client, {**google_headers(sub.channel_id, "bad", 10),
                              **from_ip("203.0.113.6")})
    assert again.status_code == 403


def test_valid_notifications_are_never_refused_for_rate(client, subscription):
    sub, token = subscription
    for n in range(1, 30):  # a burst for one calendar, well over the limit
        response = post(client, {**google_headers(sub.channel_id, token, n),
                                 **from_ip("198.51.100.1")})
        assert response.status_code == 200
    assert WebhookNotification.objects.count() == 29


def test_limiting_can_be_switched_off(client, settings):
    settings.WEBHOOK_RATE_LIMIT_ENABLED = False
    codes = {post(client, from_ip("203.0.113.7")).status_code for _ in range(6)}
    assert codes == {400}


def test_when_the_cache_is_down_it_fails_open_quickly_and_says_so(client, settings):
    settings.CACHES = {"default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }}
    before = REGISTRY.get_sample_value("calendar_sync_webhook_rate_limit_fail_open_total") or 0
    channel_id = str(uuid.uuid4())
    started = time.perf_counter()
    codes = [post(client, google_headers(channel_id, "t", n)).status_code for n in range(6)]
    elapsed = time.perf_counter() - started
    assert codes == [404] * 6  # not limited: nothing to count with
    assert elapsed < 3
    state = ratelimit.fail_open_state()
    assert state["failing_open"] and state["fail_open_count"] == 1
    # Two decisions per request (the address and the unknown channel), each recorded.
    assert counter("google", "rate_limit_fail_open") == 12
    after = REGISTRY.get_sample_value("calendar_sync_webhook_rate_limit_fail_open_total")
    assert after - before == 12


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(settings):
    settings.WEBHOOK_TRUSTED_PROXIES = ["10.0.0.2"]
    factory = RequestFactory()
    via_proxy = factory.post("/", REMOTE_ADDR="10.0.0.2",
                             HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.50")
    direct = factory.post("/", REMOTE_ADDR="192.0.2.8", HTTP_X_FORWARDED_FOR="203.0.113.50")
    garbage = factory.post("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="<script>")
    assert ratelimit.client_ip(via_proxy) == "203.0.113.50"
    assert ratelimit.client_ip(direct) == "192.0.2.8"
    assert ratelimit.client_ip(garbage) == "10.0.0.2"
