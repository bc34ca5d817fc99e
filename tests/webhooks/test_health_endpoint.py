"""GET /webhooks/health/ answers load balancers quickly, even when the database is down."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_it_passes_with_database_and_cache_up(client):
    response = client.get("/webhooks/health/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/health+json"
    body = response.json()
    assert body["status"] == "pass"
    assert set(body["checks"]) == {"database", "cache", "health_check_age"}


@pytest.mark.django_db
def test_it_refuses_other_methods(client):
    assert client.post("/webhooks/health/").status_code == 405


def test_it_fails_fast_with_503_when_the_database_is_down():
    code = (
        "import django, json, time; django.setup(); from django.test import Client; "
        "t = time.perf_counter(); r = Client(HTTP_HOST='localhost').get('/webhooks/health/'); "
        "print(json.dumps({'status': r.status_code, 'body': r.json(), "
        "'ms': (time.perf_counter() - t) * 1000}))"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="settings.test",
               DATABASE_URL="postgres://postgres@127.0.0.1:1/calendar_sync")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 503
    assert result["body"]["status"] == "fail"
    assert result["body"]["checks"]["database"][0]["status"] == "fail"
    assert "127.0.0.1:1" not in json.dumps(result["body"])  # no connection details leak
    assert result["ms"] < 1000

