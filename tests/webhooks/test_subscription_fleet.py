"""A fleet of Google and Microsoft calendars over 30 simulated days: maintenance keeps every
calendar covered by a live, unexpired channel at every step, and none ever lapses."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.maintenance import run_maintenance
from tests.support.factories import connect_account
from tests.support.sandbox import follow_clock
from tests.support.subscriptions import uncovered_calendars

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DAYS = 30
# Coarser than the crontab's 30 minutes on purpose: the renewal margin must absorb it.
STEP = timedelta(hours=4)


def test_a_fleet_stays_covered_for_thirty_days(sandbox, live_server, settings, user):
    settings.WEBHOOK_BASE_URL = live_server.url
    fleet = []
    for provider, accounts, per_account in (("google", 3, 4), ("microsoft", 2, 3)):
        for _ in range(accounts):
            fleet += connect_account(sandbox.url, user, provider, calendars=per_account)[1]
    start = timezone.now()
    totals = {"renewed": 0, "created": 0}

    with time_machine.travel(start, tick=True) as traveller:
        for step in range(int(timedelta(days=DAYS) / STEP) + 1):
            traveller.move_to(start + step * STEP)
            follow_clock(sandbox.url)
            if step:  # nothing lapsed since the previous run
                assert uncovered_calendars(sandbox.url, fleet) == [], f"before run {step}"
            summary = run_maintenance()
            assert (summary["lapsed"], summary["failed"], summary["errors"]) == (0, 0, 0)
            assert uncovered_calendars(sandbox.url, fleet) == [], f"after run {step}"
            for kind in totals:
                totals[kind] += summary[kind]
    follow_clock(sandbox.url)

    assert totals["created"] == len(fleet)
    # Channels live about a week and are renewed with a third of it left: 5+ times a month.
    assert totals["renewed"] >= 5 * len(fleet)
    # Every replaced Google channel was stopped; one open channel per calendar remains.
    assert WebhookSubscription.objects.exclude(status="stopped").count() == len(fleet)
