"""`subscription_maintenance [--dry-run]`: one line per action kind; a non-zero exit only when
it could not run at all."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions.maintenance import KINDS
from tests.support.factories import connect_account
from tests.support.processes import ROOT
from tests.support.sandbox import call_count, push_address_nowhere, set_faults

pytestmark = pytest.mark.django_db


@pytest.fixture
def calendars(sandbox, push_nowhere, user):
    return connect_account(sandbox.url, user, "google", calendars=2)[1]


def maintenance(*args: str) -> dict[str, str]:
    out = StringIO()
    call_command("subscription_maintenance", *args, stdout=out)
    lines = out.getvalue().splitlines()
    if "--dry-run" in args:
        assert lines.pop(0).startswith("dry run: nothing was changed")
    assert len(lines) == len(KINDS)
    return dict(line.rsplit(" ", 1) for line in lines)


def test_it_prints_one_line_per_action_kind(calendars):
    counts = maintenance()

    assert counts["created"] == "2"
    assert set(counts) == set(KINDS)
    assert WebhookSubscription.objects.filter(status="active").count() == 2


def test_a_dry_run_says_what_it_would_do_and_does_nothing(calendars):
    counts = maintenance("--dry-run")

    assert counts["created"] == "2"
    assert not WebhookSubscription.objects.exists()


def test_provider_failures_are_counted_not_fatal(sandbox, calendars):
    set_faults(sandbox.url, fail_next={"google.events.watch": [500]})

    counts = maintenance()

    assert counts["failed"] == "1" and counts["created"] == "1"


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_never_create_a_channel_twice(sandbox, settings, user):
    settings.WEBHOOK_BASE_URL = push_address_nowhere(sandbox.url)
    calendars = connect_account(sandbox.url, user, "google", calendars=8)[1]
    # Slow provider answers so that the two runs really overlap.
    set_faults(sandbox.url, latency_ms={"google.events.watch": 150})
    db = connection.settings_dict
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="settings.test", SANDBOX_URL=sandbox.url,
               WEBHOOK_BASE_URL=settings.WEBHOOK_BASE_URL,
               DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}")

    runs = [subprocess.Popen([sys.executable, "manage.py", "subscription_maintenance"], cwd=ROOT,
                             env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0]
    created = sum(int(line.split()[1]) for out in outputs for line in out.splitlines()
                  if line.startswith("created "))
    assert created == len(calendars)
    assert call_count(sandbox.url, "google.events.watch") == len(calendars)
    assert WebhookSubscription.objects.filter(status="active").count() == len(calendars)


def test_it_exits_non_zero_when_it_cannot_run_at_all():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="settings.test",
               DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere")

    done = subprocess.run([sys.executable, "manage.py", "subscription_maintenance"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode != 0
    assert "could not run" in done.stderr
