"""GET /webhooks/health/ answers load balancers quickly, even when the database is down."""

import json

import pytest

from apps.webhooks import probes
from tests.support.outages import GONE, printed_without_database


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
    result, _ = printed_without_database(
        "import time; from django.test import Client; "
        "t = time.perf_counter(); r = Client(HTTP_HOST='localhost').get('/webhooks/health/'); "
        "print(json.dumps({'status': r.status_code, 'body': r.json(), "
        "'ms': (time.perf_counter() - t) * 1000}))")
    assert result["status"] == 503
    assert result["body"]["status"] == "fail"
    assert result["body"]["checks"]["database"][0]["status"] == "fail"
    assert GONE not in json.dumps(result["body"])  # no connection details leak
    assert result["ms"] < 1000



# --- Concurrent probes, database sessions, what anonymous callers see ------------------------
def test_concurrent_probes_never_answer_for_each_other():
    from concurrent.futures import ThreadPoolExecutor

    from apps.webhooks.probes import probe_cache

    def probe(_: int) -> bool:
        try:
            probe_cache()
        except RuntimeError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(probe, range(300)))
    assert all(results), f"{results.count(False)} of 300 probes failed"


@pytest.mark.django_db(transaction=True)
def test_probes_reuse_their_database_sessions(client):
    from django.db.backends.signals import connection_created

    opened = []

    def count(sender, connection, **kwargs):
        opened.append(connection.alias)

    for _ in range(3):
        client.get("/webhooks/health/")  # warm: each pool thread has its session
    connection_created.connect(count)
    try:
        statuses = [client.get("/webhooks/health/").json()["status"] for _ in range(20)]
    finally:
        connection_created.disconnect(count)
    assert set(statuses) == {"pass"}
    assert opened == []


@pytest.mark.django_db
def test_anonymous_callers_get_status_and_check_names_only(client, monkeypatch):
    def broken_cache() -> None:
        raise ConnectionRefusedError("redis at 10.1.2.3:6379 refused")

    monkeypatch.setattr(probes, "CHECKS", (("database", probes._database_in_thread, True),
                                           ("cache", broken_cache, False)))
    body = client.get("/webhooks/health/").json()
    assert body == {"status": "warn", "checks": {"database": [{"status": "pass"}],
                                                 "cache": [{"status": "fail"}]}}


@pytest.mark.django_db
def test_staff_get_timings_and_the_failure(client, monkeypatch, django_user_model):
    def broken_cache() -> None:
        raise ConnectionRefusedError("redis at 10.1.2.3:6379 refused")

    monkeypatch.setattr(probes, "CHECKS", (("database", probes._database_in_thread, True),
                                           ("cache", broken_cache, False)))
    client.force_login(django_user_model.objects.create_user("ops", is_staff=True))
    cache = client.get("/webhooks/health/").json()["checks"]["cache"][0]
    assert cache["output"] == "ConnectionRefusedError" and "observedValue" in cache
    assert "10.1.2.3" not in json.dumps(cache)
