"""A revoked grant (invalid_grant): the account waits for its user, its channels are stopped
locally (no call can succeed), its calendars say why and are not polled with the dead token,
nothing retries in a loop, and push comes back once the account is reconnected."""

from __future__ import annotations

import pytest
import requests
import time_machine

from apps.calendars.models import Calendar, CalendarAccount
from apps.calendars.providers.errors import AuthRevoked
from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.maintenance import run_maintenance
from apps.webhooks.services.subscriptions.push_channels import handle_auth_revoked
from apps.webhooks.services.subscriptions.renewal import create_subscription
from tests.support.factories import connect_account
from tests.support.sandbox import call_count, follow_clock, remote_channels, set_faults
from tests.support.subscriptions import polling_pass

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(sandbox, push_nowhere, user):
    return connect_account(sandbox.url, user, "google", calendars=2)


def provider_calls(sandbox) -> int:
    counters = requests.get(f"{sandbox.url}/_sandbox/state", timeout=5).json()["counters"]
    return sum(counters.values())


def test_revocation_found_at_renewal_stops_the_accounts_channels_locally(sandbox, account):
    local, calendars, _ = account
    subs = [create_subscription(c) for c in calendars]
    set_faults(sandbox.url, revoke=[local.email])

    with time_machine.travel(min(s.renew_at for s in subs), tick=True):
        follow_clock(sandbox.url)
        run_maintenance()
    follow_clock(sandbox.url)

    local.refresh_from_db()
    assert local.status == "reauth_required"
    remote = remote_channels(sandbox.url)
    for sub in subs:
        sub.refresh_from_db()
        assert sub.status == "stopped"
        assert "revoked" in sub.last_error and local.email not in sub.last_error
        # Stopped here only: the provider refuses our calls, the channel lapses by itself.
        assert remote[sub.channel_id]["live"]
    for calendar in Calendar.objects.filter(calendar_account=local):
        assert "reconnect" in calendar.last_sync_error
        assert not calendar.fallback_polling_enabled
    # The token is revoked: polling must not use it either.
    assert polling_pass(calendars).due == 0


def test_nothing_calls_the_provider_for_a_revoked_account_until_it_is_reconnected(sandbox,
                                                                                   account):
    local, calendars, _ = account
    set_faults(sandbox.url, revoke=[local.email])

    first = run_maintenance()
    calls = provider_calls(sandbox)
    again = run_maintenance()

    local.refresh_from_db()
    assert local.status == "reauth_required"
    assert first["created"] == 0 and again.changes == 0
    assert provider_calls(sandbox) == calls
    assert not WebhookSubscription.objects.exclude(status="stopped").exists()

    # The user reconnects: a new grant, the account active again.
    grant = requests.post(f"{sandbox.url}/_sandbox/accounts", timeout=5,
                          json={"provider": "google", "email": local.email}).json()
    CalendarAccount.objects.filter(pk=local.pk).update(
        status="active", refresh_token="", access_token="")
    local.refresh_from_db()
    local.refresh_token = grant["refresh_token"]
    local.save()

    assert run_maintenance()["created"] == len(calendars)
    # Nothing left over from the revocation keeps the calendars off push.
    reconnected = polling_pass(calendars)
    assert reconnected.skipped_covered == len(calendars) and reconnected.polled == 0


def test_handling_a_revocation_touches_only_that_account(sandbox, account, user):
    local, calendars, _ = account
    other, (other_calendar,), _ = connect_account(sandbox.url, user, "google")
    mine = create_subscription(calendars[0])
    theirs = create_subscription(other_calendar)
    calls = call_count(sandbox.url, "google.channels.stop")

    handle_auth_revoked(local, AuthRevoked("Google token endpoint answered 400 (invalid_grant)"))

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == "stopped" and theirs.status == "active"
    assert CalendarAccount.objects.get(pk=other.pk).status == "active"
    assert call_count(sandbox.url, "google.channels.stop") == calls
