"""Receivers skip the browser middleware (sessions, auth, messages, CSRF) but keep what their
answers need: Content-Length, X-Frame-Options, the Host check, Security middleware headers."""

from __future__ import annotations

import pytest
from webhook_cases import RESOURCE_ID, google_headers, post

from apps.webhooks.models import WebhookNotification
from tests.support.factories import make_subscription


@pytest.mark.django_db
def test_a_receiver_answer_is_complete_and_sets_no_cookie(client, google_calendar):
    sub, secret = make_subscription(google_calendar, "google", resource_id=RESOURCE_ID)
    client.cookies["sessionid"] = "someone-elses-session"
    response = post(client, google_headers(sub.channel_id, secret))
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(response.content))
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert not response.cookies
    assert not hasattr(response.wsgi_request, "session")  # the session middleware never ran
    assert WebhookNotification.objects.count() == 1


@pytest.mark.django_db
def test_a_receiver_still_refuses_a_host_that_is_not_allowed(client, google_calendar, settings):
    settings.ALLOWED_HOSTS = ["calendar-sync.example"]
    sub, secret = make_subscription(google_calendar, "google", resource_id=RESOURCE_ID)
    response = client.post("/webhooks/google/", data=b"", content_type="text/plain",
                           headers=google_headers(sub.channel_id, secret), HTTP_HOST="evil.test")
    assert response.status_code == 400
    assert WebhookNotification.objects.count() == 0


@pytest.mark.django_db
def test_other_pages_still_get_the_full_middleware_stack(client):
    response = client.get("/webhooks/health/")
    assert hasattr(response.wsgi_request, "session")
