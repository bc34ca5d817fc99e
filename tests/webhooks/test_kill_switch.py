"""The kill switch works without a restart: a flip made by one process (the command, the
admin) is seen by the others within the cache lifetime, and it changes what they do."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.db import connection

from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.subscriptions import flags
from apps.webhooks.services.subscriptions.maintenance import run_maintenance
from apps.webhooks.services.subscriptions.renewal import create_subscription
from apps.webhooks.services.ttl_cache import reset_all
from tests.support.factories import connect_account
from tests.support.processes import ROOT
from tests.support.sandbox import push_address_nowhere, remote_channels

pytestmark = [pytest.mark.django_db(transaction=True)]

WATCHER = """
import sys, time
import django
django.setup()
from django.conf import settings
settings.WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS = float(sys.argv[1])
from apps.webhooks.services.subscriptions.flags import webhooks_enabled
seen, deadline = None, time.monotonic() + 30
while time.monotonic() < deadline:
    state = webhooks_enabled()
    if state != seen:
        print(f"{time.time():.3f} {state}", flush=True)
        seen = state
    time.sleep(0.02)
"""


def child_env() -> dict[str, str]:
    """This test database (pytest-django's test_<name>), for another process."""
    db = connection.settings_dict
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="settings.test", PYTHONPATH=str(ROOT))
    env["DATABASE_URL"] = (f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:"
                           f"{db['PORT'] or 5432}/{db['NAME']}")
    return env


def switch(action: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", "webhooks_switch", action], cwd=ROOT,
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def cache_ttl(settings):
    settings.WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS = 1.0
    return 1.0


def seen_within(expected: bool, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if flags.webhooks_enabled() is expected:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"webhooks_enabled() did not become {expected} within {seconds} s")


def test_a_flip_by_the_command_reaches_this_process_within_the_cache_lifetime(cache_ttl):
    assert flags.webhooks_enabled() is True

    assert "OFF" in switch("off")
    assert seen_within(False, cache_ttl + 0.5) <= cache_ttl + 0.5

    assert "ON" in switch("on")
    seen_within(True, cache_ttl + 0.5)
    assert "ON" in switch("status")


def test_a_flip_here_reaches_a_running_process_within_the_cache_lifetime(cache_ttl):
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(cache_ttl)], cwd=ROOT,
                               env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline().split()[1] == "True"
        flipped = time.time()
        flags.set_runtime_switch(False, by="test")
        seen_at, state = watcher.stdout.readline().split()
        assert state == "False" and float(seen_at) - flipped <= cache_ttl + 0.5

        flipped = time.time()
        flags.set_runtime_switch(True, by="test")
        seen_at, state = watcher.stdout.readline().split()
        assert state == "True" and float(seen_at) - flipped <= cache_ttl + 0.5
    finally:
        watcher.kill()
        watcher.wait(10)


def test_off_stops_every_channel_and_on_brings_back_the_rollout(sandbox, settings, user):
    settings.WEBHOOK_BASE_URL = push_address_nowhere(sandbox.url)
    _, calendars, _ = connect_account(sandbox.url, user, "google", calendars=3)
    subs = [create_subscription(c) for c in calendars]

    switch("off")
    off = run_maintenance()

    assert off["stopped"] == 3 and off["created"] == 0
    remote = remote_channels(sandbox.url)
    assert all(remote[s.channel_id]["stopped"] for s in subs)
    assert run_maintenance().changes == 0  # and nothing is created while off

    switch("on")
    on = run_maintenance()

    assert on["created"] == 3
    live = WebhookSubscription.objects.filter(status="active")
    assert live.count() == 3 and all(remote_channels(sandbox.url)[s.channel_id]["live"]
                                     for s in live)


def test_staff_can_flip_the_switch_in_the_admin(admin_client):
    page = admin_client.get("/admin/webhooks/runtimesetting/kill-switch/")
    assert page.status_code == 200 and b"ON" in page.content

    response = admin_client.post("/admin/webhooks/runtimesetting/kill-switch/",
                                 {"switch": "off"})

    assert response.status_code == 302
    reset_all()  # this process's cached switch; other processes see it within the TTL
    assert flags.webhooks_enabled() is False
    assert flags.switch_state().updated_by == "admin:admin"
    assert b"OFF" in admin_client.get("/admin/webhooks/runtimesetting/kill-switch/").content
    listing = admin_client.get("/admin/webhooks/runtimesetting/")
    assert b"kill-switch/" in listing.content


def test_the_switch_page_is_for_staff_only(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("bob", "bob@example.com", "pw"))

    response = client.post("/admin/webhooks/runtimesetting/kill-switch/", {"switch": "off"})

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert flags.switch_state().override is None
