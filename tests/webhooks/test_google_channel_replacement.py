"""Google channels cannot be renewed: the replacement overlaps the old channel, so a change
made while the switch-over happens reaches us through one of them (or both)."""

from __future__ import annotations

import pytest
import requests
import time_machine

from apps.calendars.providers.google import GoogleClient
from apps.webhooks.models import WebhookNotification, WebhookSubscription
from apps.webhooks.services.subscriptions.maintenance import run_maintenance
from apps.webhooks.services.subscriptions.renewal import create_subscription, renew_subscription
from tests.support.factories import connect_account
from tests.support.sandbox import follow_clock, fresh_access_token, remote_channels, set_faults

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def google(sandbox, live_server, settings, user):
    settings.WEBHOOK_BASE_URL = live_server.url
    account, calendars, _ = connect_account(sandbox.url, user, "google")
    return calendars[0], account.email


def add_event(sandbox, email: str, calendar_id: str, summary: str) -> None:
    token = fresh_access_token(sandbox.url, "google", email)
    response = requests.post(
        f"{sandbox.url}/calendar/v3/calendars/{calendar_id}/events", timeout=5,
        headers={"Authorization": f"Bearer {token}"},
        json={"summary": summary, "start": {"dateTime": "2030-01-07T09:00:00Z"},
              "end": {"dateTime": "2030-01-07T10:00:00Z"}})
    assert response.status_code == 200, response.text


def changes_stored_for(sub: WebhookSubscription) -> int:
    return WebhookNotification.objects.filter(subscription=sub, resource_state="exists").count()


def test_a_change_made_at_the_switch_over_is_delivered(sandbox, google, monkeypatch):
    calendar, email = google
    old = create_subscription(calendar)
    real_stop = GoogleClient.stop

    def stop_after_a_change(self, channel_id, resource_id):
        # The user edits the calendar after the new channel exists, before the old one stops.
        add_event(sandbox, email, calendar.provider_calendar_id, "made during the overlap")
        assert sandbox.pusher.wait_idle(timeout=10)
        return real_stop(self, channel_id, resource_id)

    monkeypatch.setattr(GoogleClient, "stop", stop_after_a_change)
    with time_machine.travel(old.renew_at, tick=True):
        follow_clock(sandbox.url)
        new = renew_subscription(old)
    follow_clock(sandbox.url)

    old.refresh_from_db()
    assert new.pk != old.pk and old.status == "stopped" and new.status == "active"
    assert changes_stored_for(old) + changes_stored_for(new) >= 1
    remote = remote_channels(sandbox.url)
    assert remote[old.channel_id]["stopped"] and remote[new.channel_id]["live"]


def test_both_channels_are_accepted_until_the_old_one_is_stopped(sandbox, google):
    calendar, email = google
    old = create_subscription(calendar)
    # Stopping the old channel fails once: the overlap lasts until the next run.
    set_faults(sandbox.url, fail_next={"google.channels.stop": [503]})
    with time_machine.travel(old.renew_at, tick=True):
        follow_clock(sandbox.url)
        run_maintenance()
    follow_clock(sandbox.url)
    old.refresh_from_db()
    new = old.replaced_by
    assert old.status == "active" and new.status == "active"

    add_event(sandbox, email, calendar.provider_calendar_id, "during the overlap")
    assert sandbox.pusher.wait_idle(timeout=10)

    assert changes_stored_for(old) == 1 and changes_stored_for(new) == 1

    with time_machine.travel(old.next_retry_at, tick=True):
        follow_clock(sandbox.url)
        finished = run_maintenance()
    follow_clock(sandbox.url)
    old.refresh_from_db()
    assert finished["stopped"] == 1 and old.status == "stopped"
    assert remote_channels(sandbox.url)[old.channel_id]["stopped"]

    add_event(sandbox, email, calendar.provider_calendar_id, "after the switch-over")
    assert sandbox.pusher.wait_idle(timeout=10)
    assert changes_stored_for(old) == 1 and changes_stored_for(new) == 2
