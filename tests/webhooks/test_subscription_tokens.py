"""The shared secret of a channel is stored as a digest and compared in constant time."""

import pytest

from apps.webhooks.models import WebhookSubscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscription(google_calendar):
    return WebhookSubscription(calendar=google_calendar, provider="google", channel_id="chan")


def test_the_digest_never_equals_the_token(subscription):
    token = subscription.issue_token()
    subscription.save()
    stored = WebhookSubscription.objects.get(pk=subscription.pk)
    assert stored.token_digest and token not in stored.token_digest
    assert stored.matches_token(token)


def test_near_misses_are_rejected(subscription):
    token = subscription.issue_token()
    assert not subscription.matches_token(token[:-1])
    assert not subscription.matches_token(token + "x")
    assert not subscription.matches_token(token.upper() if token != token.upper() else token + "A")
    assert not subscription.matches_token("")
    assert not subscription.matches_token(None)


def test_each_issue_makes_a_new_secret(subscription):
    first = subscription.issue_token()
    second = subscription.issue_token()
    assert first != second
    assert not subscription.matches_token(first)
    assert subscription.matches_token(second)


def test_a_subscription_without_a_secret_matches_nothing(subscription):
    assert not subscription.matches_token("anything")
