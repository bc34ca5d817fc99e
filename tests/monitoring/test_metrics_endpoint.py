"""/metrics: Prometheus text, bearer-token protected, database gauges read at scrape time,
merged across processes in multiprocess mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.monitoring.models import HealthSnapshot, Incident
from calendar_sync import metrics as shared_metrics
from tests.support.factories import make_subscriptions
from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db


def scrape(client, token: str | None = None) -> dict[tuple[str, tuple], float]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_a_token_is_required_when_one_is_configured(client, settings):
    settings.METRICS_TOKEN = "scrape-token-1234"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-123")
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic scrape-token-1234").status_code == 401
    assert scrape(client, "scrape-token-1234")


def test_it_is_open_when_no_token_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    assert scrape(client)


def test_subscriptions_health_and_incidents_are_read_from_the_database(client, calendar):
    make_subscriptions(calendar, 3)
    make_subscriptions(calendar, 2, status="failed")
    HealthSnapshot.objects.create(status="healthy")
    HealthSnapshot.objects.create(status="degraded")  # the latest
    Incident.objects.create(key="cache_down", level="warning", title="Cache")
    samples = scrape(client)
    assert samples[("calendar_sync_webhook_subscriptions", (("status", "active"),))] == 3
    assert samples[("calendar_sync_webhook_subscriptions", (("status", "failed"),))] == 2
    assert samples[("calendar_sync_webhook_subscriptions", (("status", "expired"),))] == 0
    assert samples[("calendar_sync_health_status", (("status", "degraded"),))] == 1
    assert samples[("calendar_sync_health_status", (("status", "healthy"),))] == 0
    assert samples[("calendar_sync_incidents_open", (("level", "warning"),))] == 1
    assert samples[("calendar_sync_database_up", ())] == 1


def test_the_process_counters_and_latency_histograms_are_exposed(client):
    before = scrape(client).get(
        ("calendar_sync_webhook_notifications_total",
         (("outcome", "stored"), ("provider", "google"))), 0)
    shared_metrics.NOTIFICATIONS.labels("google", "stored").inc(3)
    shared_metrics.ACK_SECONDS.labels("microsoft").observe(2.95)
    samples = scrape(client)
    assert samples[("calendar_sync_webhook_notifications_total",
                    (("outcome", "stored"), ("provider", "google")))] == before + 3
    # Graph's 3 s limit is a bucket edge: an answer in 2.95 s is under it, not over 2.9.
    under_3 = samples[("calendar_sync_webhook_ack_seconds_bucket",
                       (("le", "3.0"), ("provider", "microsoft")))]
    under_2_9 = samples[("calendar_sync_webhook_ack_seconds_bucket",
                         (("le", "2.9"), ("provider", "microsoft")))]
    assert under_3 == under_2_9 + 1


def test_no_label_carries_an_id(client, calendar):
    make_subscriptions(calendar, 1)
    body = client.get("/metrics").content.decode()
    labels = set(re.findall(r"[{,](\w+)=", body))
    assert labels and not {name for name in labels if name.endswith("id")}


def test_counters_from_other_processes_are_merged_in_multiprocess_mode(client, tmp_path,
                                                                       monkeypatch):
    # Another process (a gunicorn worker) counts into the shared directory...
    code = ("from calendar_sync import metrics; "
            "metrics.NOTIFICATIONS.labels('microsoft', 'stored').inc(7)")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    # ...and whichever process answers the scrape reports it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = scrape(client)
    assert samples[("calendar_sync_webhook_notifications_total",
                    (("outcome", "stored"), ("provider", "microsoft")))] == 7
    assert samples[("calendar_sync_database_up", ())] == 1


def test_gunicorn_sets_up_multiprocess_mode(tmp_path):
    code = ("import runpy, json, os; c = runpy.run_path('gunicorn.conf.py'); "
            "print(json.dumps([os.environ['PROMETHEUS_MULTIPROC_DIR'], "
            "callable(c['child_exit'])]))")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["VAR_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f'["{tmp_path}/prometheus", true]'
    assert (tmp_path / "prometheus").is_dir()
