"""Every scheduled job's runs are recorded (job, host, start, end, outcome, summary), shown
with their age in the health document and on the dashboard, and pruned by the cleanup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.monitoring.models import JobRun
from apps.monitoring.services.health_document import get_system_health
from tests.support.factories import make_calendar, make_notifications, make_subscriptions

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 2, 10, 0, 20, tzinfo=UTC)


def _run(job: str, started: datetime, outcome: str = "succeeded", **fields) -> JobRun:
    return JobRun.objects.create(job=job, slot=started.replace(second=0), host="host-a",
                                 started_at=started, outcome=outcome,
                                 finished_at=started + timedelta(seconds=3), **fields)


def test_a_scheduled_command_records_its_run_with_host_outcome_and_summary(settings):
    settings.CLUSTER_HOST_NAME = "host-b"
    with time_machine.travel(NOW, tick=False):
        call_command("cleanup_webhook_data", "--days=30", stdout=StringIO())
    run = JobRun.objects.get()
    assert (run.job, run.host, run.outcome) == ("cleanup_webhook_data", "host-b", "succeeded")
    assert run.slot == NOW.replace(second=0) and run.finished_at == NOW
    assert run.summary == "deleted 0 rows in total"  # its last line of output


def test_a_second_run_of_the_same_slot_is_skipped_and_says_why():
    out = StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("cleanup_webhook_data", "--days=30", stdout=StringIO())
        call_command("cleanup_webhook_data", "--days=30", stdout=out)
    assert JobRun.objects.count() == 1
    assert "skipped cleanup_webhook_data: the 10:00 run already happened" in out.getvalue()


def test_a_dry_run_or_refused_arguments_claim_no_slot():
    call_command("cleanup_webhook_data", "--days=30", "--dry-run", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("cleanup_webhook_data", "--days=0", stdout=StringIO())
    assert not JobRun.objects.exists()


def test_a_failing_job_is_recorded_failed_without_the_exception_text(monkeypatch):
    from calendar_sync.management.commands import cleanup_webhook_data

    def boom(*args, **kwargs):
        raise RuntimeError("postgres://user:secret@db/calendar_sync unreachable")

    monkeypatch.setattr(cleanup_webhook_data, "purge_webhook_data", boom)
    with pytest.raises(RuntimeError):
        call_command("cleanup_webhook_data", "--days=30", stdout=StringIO())
    run = JobRun.objects.get()
    assert run.outcome == "failed" and run.finished_at is not None
    assert "RuntimeError" in run.summary and "secret" not in run.summary


def test_the_health_document_and_dashboard_show_each_jobs_last_run_and_age(
        client, staff_user):
    _run("health_check", NOW - timedelta(minutes=10))
    _run("health_check", NOW - timedelta(minutes=1), summary="Status: healthy")
    _run("subscription_maintenance", NOW - timedelta(minutes=23), outcome="failed",
         summary="ConnectionError after: renewing")
    with time_machine.travel(NOW, tick=False):
        jobs = get_system_health()["metrics"]["jobs"]
        client.force_login(staff_user)
        page = client.get("/webhooks/monitoring/").content.decode()
    assert [(j["job"], j["age_seconds"], j["outcome"]) for j in jobs] == [
        ("health_check", 60, "succeeded"), ("subscription_maintenance", 1380, "failed")]
    table = page[page.index('id="jobs"'):]
    assert "subscription_maintenance" in table and "ConnectionError after: renewing" in table
    assert table.index("health_check") < table.index("subscription_maintenance")


def test_cleanup_prunes_old_finished_runs_and_keeps_recent_and_running_ones():
    old, recent = NOW - timedelta(days=40), NOW - timedelta(days=2)
    _run("health_check", old)
    kept = [_run("health_check", recent).pk,
            JobRun.objects.create(job="subscription_maintenance", slot=old, host="h",
                                  started_at=old).pk]
    with time_machine.travel(NOW, tick=False):
        call_command("cleanup_webhook_data", "--days=30", stdout=StringIO())
    remaining = set(JobRun.objects.exclude(job="cleanup_webhook_data")
                    .values_list("pk", flat=True))
    assert remaining == set(kept)


def test_a_health_check_that_finds_trouble_is_a_job_that_ran(settings):
    settings.WEBHOOK_ALERT_CHANNELS = []
    make_notifications(make_subscriptions(make_calendar(), 1)[0], 30, status="pending",
                       received_at=NOW - timedelta(hours=1))  # no worker: critical
    with time_machine.travel(NOW, tick=False), pytest.raises(SystemExit) as exited:
        call_command("webhook_health_check", "--send-alerts", stdout=StringIO())
    run = JobRun.objects.get(job="health_report")
    assert exited.value.code == 2
    assert run.outcome == "succeeded" and run.summary.endswith("(exit 2)")
