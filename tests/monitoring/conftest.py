"""Fixtures of the monitoring tests (the shared ones are in tests/support/fixtures.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.factories import beat, make_calendar


@pytest.fixture(autouse=True)
def _no_counts_from_earlier_tests() -> Iterator[None]:
    """Receivers count in the process before the cache: start each test without others'."""
    from calendar_sync import sli

    sli.discard_process_counts()
    yield


@pytest.fixture
def calendar(db):
    return make_calendar()


@pytest.fixture
def live_worker(db):
    return beat()


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("staff", "staff@example.com", "pw",
                                                 is_staff=True)


@pytest.fixture
def all_channels(sandbox, settings):
    """Every alert channel on, pointed at the sandbox sinks (email: the locmem outbox)."""
    settings.WEBHOOK_ALERT_CHANNELS = ["email", "slack", "webhook", "pagerduty"]
    settings.WEBHOOK_ALERT_EMAIL_RECIPIENTS = ["oncall@example.com", "ops@example.com"]
    settings.SLACK_WEBHOOK_URL = f"{sandbox.url}/_sandbox/sinks/slack/T000/B000/XXXSECRET"
    settings.EXTERNAL_ALERT_WEBHOOK_URL = f"{sandbox.url}/_sandbox/sinks/webhook/alerts"
    settings.PAGERDUTY_ROUTING_KEY = "routing-key-secret-0123456789abcdef"
    settings.PAGERDUTY_EVENTS_URL = f"{sandbox.url}/v2/enqueue"
    settings.ALERT_DELIVERY_RETRY_BASE_SECONDS = 0.0
    return sandbox
