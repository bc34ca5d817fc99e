"""cleanup_webhook_data also prunes silent worker heartbeats and expired sessions."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.utils import timezone

from apps.webhooks.models import WorkerHeartbeat
from tests.support.factories import beat

pytestmark = pytest.mark.django_db


def test_old_heartbeats_and_expired_sessions_go_live_ones_stay():
    now = timezone.now()
    beat("alive")
    beat("stopped-long-ago", at=now - timedelta(days=40))
    WorkerHeartbeat.objects.filter(worker_id="stopped-long-ago").update(
        stopped_at=now - timedelta(days=40))
    beat("stopped-yesterday", at=now - timedelta(days=1))
    current = SessionStore()
    current["x"] = 1
    current.create()
    stale = SessionStore()
    stale.create()
    Session.objects.filter(session_key=stale.session_key).update(
        expire_date=now - timedelta(minutes=1))
    out = StringIO()
    call_command("cleanup_webhook_data", "--days=30", stdout=out)
    assert set(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == {
        "alive", "stopped-yesterday"}
    assert list(Session.objects.values_list("session_key", flat=True)) == [current.session_key]
    assert "worker heartbeats: deleted 1" in out.getvalue()
    assert "expired sessions: deleted 1" in out.getvalue()
