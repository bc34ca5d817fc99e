"""The security suite every webhook receiver inherits.

A receiver's test class subclasses :class:`WebhookCases`, says how to build a valid, a forged
and an unknown-channel request for its provider, and gets every shared behaviour checked:
storing once, refusing forgeries without storing or logging the secret, orphans, ended
subscriptions, the kill switch, body size, methods, CSRF, the database failing at the store
step, and rate limiting of abusive sources.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from django.db import OperationalError
from django.db.backends.utils import CursorWrapper
from django.test import Client
from prometheus_client import REGISTRY

from apps.webhooks.models import (
    OrphanChannel,
    WebhookCounter,
    WebhookNotification,
)
from apps.webhooks.services.subscriptions import flags
from tests.support.factories import make_microsoft_calendar, make_subscription

# --- Requests as the providers send them ---------------------------------------------------

GOOGLE_URL = "/webhooks/google/"
RESOURCE_ID = "ret08u3rv24htgh289g"


def google_headers(channel_id, token, n=1, state="exists", resource_id=RESOURCE_ID) -> dict:
    headers = {
        "X-Goog-Channel-ID": channel_id,
        "X-Goog-Message-Number": str(n),
        "X-Goog-Resource-ID": resource_id,
        "X-Goog-Resource-State": state,
        "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/calendars/primary/events",
        "X-Goog-Channel-Expiration": "Tue, 19 Nov 2030 01:13:52 GMT",
        "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
    }
    if token is not None:
        headers["X-Goog-Channel-Token"] = token
    return headers


def post(client, headers):
    """A Google push notification: headers only, an empty body."""
    return client.post(GOOGLE_URL, data=b"", content_type="application/octet-stream",
                       headers=headers)


def change_item(subscription_id, client_state, n=1, change="updated", etag=None) -> dict:
    item = {
        "id": f"lsgTZMr9KwAAA{n}",
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": "2030-03-20T11:00:00.0000000Z",
        "changeType": change,
        "resource": f"Users/7c1/Events/AAMkAD{n}",
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Event",
            "@odata.id": f"Users/7c1/Events/AAMkAD{n}",
            "@odata.etag": etag or f'W/"DwAAABYAAAA{n}"',
            "id": f"AAMkAD{n}",
        },
    }
    if client_state is not None:
        item["clientState"] = client_state
    return item


def counter(provider: str, kind: str) -> int:
    return sum(WebhookCounter.objects.filter(provider=provider, kind=kind)
               .values_list("count", flat=True))


def metric(provider: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("calendar_sync_webhook_notifications_total",
                                      {"provider": provider, "outcome": outcome})
    return value or 0.0


def ack_samples(provider: str) -> float:
    value = REGISTRY.get_sample_value("calendar_sync_webhook_ack_seconds_count",
                                      {"provider": provider})
    return value or 0.0




@pytest.mark.django_db
class WebhookCases:
    """Subclass, set the attributes and implement the ``send_*`` hooks."""

    provider = ""
    url = ""
    ok_status = 200
    forged_status = 403
    unknown_status = 404

    # Hooks ---------------------------------------------------------------------------------
    @pytest.fixture
    def calendar(self):
        raise NotImplementedError

    def subscription_resource_id(self) -> str:
        return ""

    def send(self, client, subscription, secret, n=1, **extra):
        """A valid notification; ``n`` makes it a distinct one (same n = a redelivery)."""
        raise NotImplementedError

    def send_unknown(self, client, channel_id, n=1, **extra):
        raise NotImplementedError

    # Helpers -------------------------------------------------------------------------------
    def subscribe(self, calendar, status="active"):
        return make_subscription(calendar, self.provider, status, self.subscription_resource_id())

    def send_forged(self, client, subscription, n=1, **extra):
        return self.send(client, subscription, "forged-" + uuid.uuid4().hex, n, **extra)

    # Storing -------------------------------------------------------------------------------
    def test_it_stores_a_valid_notification_as_pending(self, client, calendar):
        subscription, secret = self.subscribe(calendar)
        response = self.send(client, subscription, secret)
        assert response.status_code == self.ok_status
        row = WebhookNotification.objects.get()
        assert row.subscription == subscription
        assert row.provider == self.provider
        assert row.processing_status == "pending"
        assert row.resource_state

    def test_a_redelivery_is_acknowledged_and_stored_once(self, client, calendar):
        subscription, secret = self.subscribe(calendar)
        first = self.send(client, subscription, secret, n=7)
        again = self.send(client, subscription, secret, n=7)
        assert (first.status_code, again.status_code) == (self.ok_status, self.ok_status)
        assert WebhookNotification.objects.count() == 1
        assert counter(self.provider, "duplicate") == 1

    def test_distinct_notifications_are_each_stored(self, client, calendar):
        subscription, secret = self.subscribe(calendar)
        for n in (3, 1, 2):
            assert self.send(client, subscription, secret, n=n).status_code == self.ok_status
        assert WebhookNotification.objects.count() == 3

    def test_a_pending_subscription_is_accepted(self, client, calendar):
        subscription, secret = self.subscribe(calendar, status="pending")
        assert self.send(client, subscription, secret).status_code == self.ok_status
        assert WebhookNotification.objects.filter(processing_status="pending").count() == 1

    def test_the_subscription_records_when_it_last_heard(self, client, calendar):
        subscription, secret = self.subscribe(calendar)
        self.send(client, subscription, secret)
        subscription.refresh_from_db()
        assert subscription.last_notification_at is not None

    # Forgeries -----------------------------------------------------------------------------
    def test_a_forged_secret_is_refused_and_nothing_is_stored(self, client, calendar):
        subscription, _ = self.subscribe(calendar)
        response = self.send_forged(client, subscription)
        assert response.status_code == self.forged_status
        assert WebhookNotification.objects.count() == 0
        assert counter(self.provider, "rejected") == 1
        assert metric(self.provider, "rejected") >= 1

    def test_a_missing_secret_is_refused(self, client, calendar):
        subscription, _ = self.subscribe(calendar)
        response = self.send(client, subscription, None)
        assert response.status_code == self.forged_status
        assert WebhookNotification.objects.count() == 0

    def test_the_secret_is_never_logged_nor_stored(self, client, calendar, caplog):
        caplog.set_level(logging.DEBUG)
        subscription, secret = self.subscribe(calendar)
        self.send(client, subscription, secret, n=1)
        other, other_secret = self.subscribe(calendar)
        other.token_digest = "0" * 64  # now the presented secret is wrong
        other.save()
        forged = self.send(client, other, other_secret, n=2)
        assert forged.status_code == self.forged_status
        assert caplog.records, "the refusal should have been logged"
        assert secret not in caplog.text and other_secret not in caplog.text
        stored = json.dumps(list(WebhookNotification.objects.values("headers", "payload")))
        assert secret not in stored
        assert other_secret not in forged.content.decode()

    # Unknown and ended subscriptions -------------------------------------------------------
    def test_an_unknown_channel_is_remembered_as_an_orphan(self, client):
        channel_id = str(uuid.uuid4())
        first = self.send_unknown(client, channel_id, n=1)
        second = self.send_unknown(client, channel_id, n=2)
        assert first.status_code == second.status_code == self.unknown_status
        orphan = OrphanChannel.objects.get(provider=self.provider, channel_id=channel_id)
        assert orphan.hits == 2 and orphan.status == "open"
        assert counter(self.provider, "orphan") == 2
        assert WebhookNotification.objects.count() == 0

    @pytest.mark.parametrize("status", ["stopped", "suspended", "expired", "failed"])
    def test_an_ended_subscription_is_acknowledged_but_not_queued(self, client, calendar,
                                                                  status):
        subscription, secret = self.subscribe(calendar, status=status)
        assert self.send(client, subscription, secret).status_code == self.ok_status
        assert WebhookNotification.objects.count() == 0
        assert counter(self.provider, "ignored") == 1

    # Kill switch ---------------------------------------------------------------------------
    def test_switched_off_by_setting_it_acknowledges_and_marks_ignored(self, client, calendar,
                                                                      settings):
        settings.WEBHOOKS_ENABLED = False
        subscription, secret = self.subscribe(calendar)
        assert self.send(client, subscription, secret).status_code == self.ok_status
        row = WebhookNotification.objects.get()
        assert row.processing_status == "ignored" and row.processed_at is not None

    def test_switched_off_at_run_time_it_acknowledges_and_marks_ignored(self, client,
                                                                        calendar):
        subscription, secret = self.subscribe(calendar)
        flags.set_runtime_switch(False, by="test")
        assert self.send(client, subscription, secret, n=1).status_code == self.ok_status
        flags.set_runtime_switch(True, by="test")
        assert self.send(client, subscription, secret, n=2).status_code == self.ok_status
        statuses = list(WebhookNotification.objects.order_by("id")
                        .values_list("processing_status", flat=True))
        assert statuses == ["ignored", "pending"]

    # HTTP hygiene --------------------------------------------------------------------------
    def test_an_oversize_body_is_refused_with_413(self, client, calendar, settings):
        settings.WEBHOOK_MAX_BODY_BYTES = 1024
        subscription, secret = self.subscribe(calendar)
        response = client.post(self.url, data=b"x" * 2048, content_type="application/json",
                               headers=self.valid_headers(subscription, secret))
        assert response.status_code == 413
        assert WebhookNotification.objects.count() == 0

    def valid_headers(self, subscription, secret) -> dict:
        return {}

    @pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "options", "head"])
    def test_other_methods_are_refused_with_405(self, client, method):
        response = getattr(client, method)(self.url)
        assert response.status_code == 405
        assert response["Allow"] == "POST"

    def test_no_csrf_token_is_needed(self, calendar):
        subscription, secret = self.subscribe(calendar)
        strict = Client(enforce_csrf_checks=True)
        assert self.send(strict, subscription, secret).status_code == self.ok_status

    def test_refusals_are_plain_text_and_never_sniffed(self, client, calendar):
        subscription, _ = self.subscribe(calendar)
        response = self.send_forged(client, subscription)
        assert response["Content-Type"].startswith("text/plain")
        assert response["X-Content-Type-Options"] == "nosniff"

    # Durability ----------------------------------------------------------------------------
    def test_a_database_failure_at_the_store_step_answers_503_not_2xx(self, client, calendar,
                                                                      monkeypatch):
        subscription, secret = self.subscribe(calendar)
        real_execute = CursorWrapper.execute

        def execute(cursor, sql, params=None):
            # The statement that stores the notification dies; everything before it worked.
            # (or its prepared form, EXECUTE webhooks_store_…)
            if (sql.lstrip().startswith(("INSERT", "WITH")) and "webhooknotification" in sql
                    or sql.startswith("EXECUTE webhooks_store_")):
                raise OperationalError("server closed the connection unexpectedly")
            return real_execute(cursor, sql, params)

        monkeypatch.setattr(CursorWrapper, "execute", execute)
        response = self.send(client, subscription, secret)
        monkeypatch.undo()
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert WebhookNotification.objects.count() == 0
        assert metric(self.provider, "unavailable") >= 1

    # Metrics -------------------------------------------------------------------------------
    def test_stored_notifications_and_ack_latency_are_measured(self, client, calendar):
        subscription, secret = self.subscribe(calendar)
        stored_before, latency_before = metric(self.provider, "stored"), ack_samples(
            self.provider)
        self.send(client, subscription, secret)
        assert metric(self.provider, "stored") == stored_before + 1
        assert ack_samples(self.provider) > latency_before

    # Rate limiting -------------------------------------------------------------------------
    def test_an_abusive_source_is_limited_but_valid_notifications_pass(self, client,
                                                                       calendar, settings):
        settings.WEBHOOK_RATE_LIMIT_MAX_REQUESTS = 3
        subscription, secret = self.subscribe(calendar)
        attacker = {"X-Forwarded-For": "203.0.113.9"}
        codes = [self.send_forged(client, subscription, n, **attacker).status_code
                 for n in range(1, 5)]
        assert codes == [self.forged_status] * 3 + [429]
        limited = self.send_forged(client, subscription, 5, **attacker)
        assert 1 <= int(limited["Retry-After"]) <= settings.WEBHOOK_RATE_LIMIT_WINDOW_SECONDS
        assert counter(self.provider, "rate_limited") == 2
        # The same source with the right secret is never refused for rate.
        for n in range(10, 16):
            response = self.send(client, subscription, secret, n, **attacker)
            assert response.status_code == self.ok_status
        assert WebhookNotification.objects.count() == 6
        # Another source is not affected.
        other = self.send_forged(client, subscription, 20, **{"X-Forwarded-For": "192.0.2.1"})
        assert other.status_code == self.forged_status


def post_items(client, items: list[dict], url: str = "/webhooks/microsoft/", **headers):
    """A Graph notification batch, as Graph POSTs it."""
    return client.post(url, data=json.dumps({"value": items}), content_type="application/json",
                       headers=headers)


class GraphCases(WebhookCases):
    """The suite for a Graph endpoint: a batch is acknowledged with 202 whatever its items."""

    provider = "microsoft"
    ok_status = forged_status = unknown_status = 202

    @staticmethod
    def item(subscription_id: str, client_state: str, n: int) -> dict:
        raise NotImplementedError

    @pytest.fixture
    def calendar(self, user):
        return make_microsoft_calendar(user)

    def send(self, client, subscription, secret, n=1, **extra):
        return post_items(client, [self.item(subscription.channel_id, secret, n)], self.url,
                          **extra)

    def send_unknown(self, client, channel_id, n=1, **extra):
        return post_items(client, [self.item(channel_id, "whatever", n)], self.url, **extra)
