"""Rollout buckets: the same in every process (whatever PYTHONHASHSEED), and raising a
percentage only ever adds calendars."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

from apps.calendars.models import Calendar, CalendarAccount
from apps.webhooks.services.subscriptions.flags import bucket, calendar_in_rollout
from settings import deployment_phases
from tests.support.processes import ROOT

IDS = range(1, 401)

PROBE = """
import json, django
django.setup()
from apps.webhooks.services.subscriptions.flags import bucket
print(json.dumps({"calendar": [bucket("calendar", i) for i in range(1, 401)],
                  "user": [bucket("user", i) for i in range(1, 401)],
                  "builtin_hash": hash("calendar:7")}))
"""


def buckets_in_a_process(hash_seed: str) -> dict:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, DJANGO_SETTINGS_MODULE="settings.test",
               PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def calendars(n: int = 400, users: int = 400) -> list[Calendar]:
    """Unsaved calendars with ids (bucketing needs nothing else)."""
    out = []
    for i in range(1, n + 1):
        account = CalendarAccount(pk=i, user_id=(i % users) + 1, provider="google",
                                  email=f"user{i}@example.com")
        out.append(Calendar(pk=i, calendar_account=account, provider_calendar_id=f"c{i}"))
    return out


def in_rollout(cals: list[Calendar]) -> set[int]:
    return {c.pk for c in cals if calendar_in_rollout(c)}


def test_every_process_puts_a_calendar_in_the_same_bucket():
    first, second = buckets_in_a_process("1"), buckets_in_a_process("2")

    # Python's own hash differs between the two processes; our buckets do not.
    assert first["builtin_hash"] != second["builtin_hash"]
    assert first["calendar"] == second["calendar"] == [bucket("calendar", i) for i in IDS]
    assert first["user"] == second["user"] == [bucket("user", i) for i in IDS]


def test_raising_the_calendar_percentage_only_adds_calendars(settings):
    cals = calendars()
    previous: set[int] = set()
    for percentage in range(0, 101, 5):
        settings.WEBHOOK_ROLLOUT_PERCENTAGE = percentage
        current = in_rollout(cals)
        assert previous <= current
        previous = current
    assert previous == {c.pk for c in cals}


def test_raising_the_user_percentage_only_adds_calendars(settings):
    cals = calendars(users=50)
    previous: set[int] = set()
    for percentage in range(0, 101, 10):
        settings.WEBHOOK_USER_ROLLOUT_PERCENTAGE = percentage
        current = in_rollout(cals)
        assert previous <= current
        previous = current


def test_a_percentage_covers_about_that_share_of_calendars(settings):
    cals = calendars(n=2000)
    settings.WEBHOOK_ROLLOUT_PERCENTAGE = 10

    share = len(in_rollout(cals)) / len(cals)

    assert 0.07 < share < 0.13


def test_early_adopters_are_in_whatever_the_percentages(settings):
    cals = calendars(n=20)
    settings.WEBHOOK_ROLLOUT_PERCENTAGE = 0
    settings.WEBHOOK_USER_ROLLOUT_PERCENTAGE = 0
    settings.WEBHOOK_EARLY_ADOPTERS = ["User3@Example.com"]

    assert in_rollout(cals) == {3}


def test_the_five_phases_widen_the_rollout_step_by_step(settings, monkeypatch):
    cals = calendars(n=1000, users=300)
    monkeypatch.setenv("WEBHOOK_EARLY_ADOPTERS", "user1@example.com,user2@example.com")
    phases = importlib.reload(deployment_phases)  # the phases read the adopters at import
    covered = []
    try:
        for phase in range(1, 6):
            for name, value in phases.phase_settings(phase).items():
                setattr(settings, name, value)
            covered.append(in_rollout(cals))
    finally:
        monkeypatch.undo()
        importlib.reload(deployment_phases)

    assert covered[0] == set()
    assert covered[1] == {1, 2}
    assert 0.05 < len(covered[2]) / len(cals) < 0.16
    assert 0.65 < len(covered[3]) / len(cals) < 0.85
    assert len(covered[4]) == len(cals)
    assert all(a <= b for a, b in zip(covered, covered[1:], strict=False))

