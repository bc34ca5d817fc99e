"""Durable acknowledgement: a 2xx leaves only after the row committed; a database that is
down, hangs or dies mid-request gets the provider a quick 503 (it retries), never a 2xx."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest
from django.db import close_old_connections, connection
from webhook_cases import RESOURCE_ID, google_headers, post

from apps.webhooks.models import WebhookNotification
from apps.webhooks.services.queue.wakeup import NOTIFY_CHANNEL
from apps.webhooks.services.receiving import ingest
from apps.webhooks.services.ttl_cache import reset_all
from tests.support.concurrency import run_together
from tests.support.factories import make_microsoft_calendar, make_subscription
from tests.support.processes import ROOT

# Runs in a fresh interpreter whose DATABASE_URL points at a dead (or hung) server.
PROBE = r"""
import json, sys, time
import django
django.setup()
from django.test import Client

client = Client(HTTP_HOST="localhost", raise_request_exception=False)
goog = {"X-Goog-Channel-ID": "c1", "X-Goog-Channel-Token": "t", "X-Goog-Resource-ID": "r1",
        "X-Goog-Resource-State": "exists", "X-Goog-Message-Number": "12"}
item = {"subscriptionId": "s1", "clientState": "x", "changeType": "updated",
        "resource": "Users/1/Events/2"}
cases = {
    "google": lambda: client.post("/webhooks/google/", data=b"",
                                  content_type="application/octet-stream", headers=goog),
    "graph": lambda: client.post("/webhooks/microsoft/", data=json.dumps({"value": [item]}),
                                 content_type="application/json"),
    "graph_validation": lambda: client.post(
        "/webhooks/microsoft/?validationToken=hello%20graph", data=b"",
        content_type="text/plain"),
    "lifecycle_validation": lambda: client.post(
        "/webhooks/microsoft/lifecycle/?validationToken=hi", data=b"",
        content_type="text/plain"),
}
out = {}
for name in sys.argv[1:]:
    started = time.perf_counter()
    response = cases[name]()
    out[name] = {"status": response.status_code, "body": response.content.decode(),
                 "retry_after": response.get("Retry-After"),
                 "seconds": time.perf_counter() - started}
print(json.dumps(out))
"""


def run_probe(database_url: str, *cases: str) -> dict:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="settings.test", DATABASE_URL=database_url)
    done = subprocess.run([sys.executable, "-c", PROBE, *cases], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_with_the_database_down_notifications_get_a_quick_503_and_validation_still_works():
    result = run_probe("postgres://postgres@127.0.0.1:1/calendar_sync", "google", "graph",
                       "graph_validation", "lifecycle_validation")
    for name in ("google", "graph"):
        assert result[name]["status"] == 503
        assert result[name]["retry_after"] == "5"
        assert result[name]["seconds"] < 1
        assert "Traceback" not in result[name]["body"]
        assert "127.0.0.1" not in result[name]["body"]  # no connection details leak
    assert (result["graph_validation"]["status"], result["graph_validation"]["body"]) == (
        200, "hello graph")
    assert (result["lifecycle_validation"]["status"], result["lifecycle_validation"]["body"]) \
        == (200, "hi")


@pytest.mark.slow
def test_a_hung_database_gets_a_503_within_the_connect_timeout():
    # A server that accepts connections and never says a word.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept_and_hold():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    holder = threading.Thread(target=accept_and_hold, daemon=True)
    holder.start()
    try:
        port = listener.getsockname()[1]
        result = run_probe(f"postgres://postgres@127.0.0.1:{port}/x?connect_timeout=2", "google")
    finally:
        stop.set()
        holder.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert result["google"]["status"] == 503
    assert result["google"]["seconds"] < 4


def _count_rows_from_another_connection(table: str) -> int:
    return _query_another_connection(f"SELECT count(*) FROM {table}", [])


def _count_from_another_connection(dedup_key: str) -> int:
    return _query_another_connection(
        "SELECT count(*) FROM webhooks_webhooknotification WHERE dedup_key = %s", [dedup_key])


def _query_another_connection(sql: str, params: list) -> int:
    settings_db = connection.settings_dict
    other = psycopg2.connect(dbname=settings_db["NAME"], user=settings_db["USER"],
                             password=settings_db["PASSWORD"], host=settings_db["HOST"],
                             port=settings_db["PORT"] or 5432)
    try:
        with other.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_the_row_is_committed_before_the_2xx_leaves(client, google_calendar):
    sub, token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    response = post(client, google_headers(sub.channel_id, token, n=31))
    assert response.status_code == 200
    assert _count_from_another_connection(f"google:{sub.channel_id}:31") == 1


@contextmanager
def rows_refused(pattern: str) -> Iterator[None]:
    """PostgreSQL refuses to insert a notification whose payload matches ``pattern``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_refuse_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.payload::text LIKE %s THEN RAISE EXCEPTION 'refused'; END IF; "
            "RETURN NEW; END $$", [pattern])
        cursor.execute("CREATE TRIGGER test_refuse_row BEFORE INSERT ON "
                       "webhooks_webhooknotification FOR EACH ROW "
                       "EXECUTE FUNCTION test_refuse_row()")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER test_refuse_row ON webhooks_webhooknotification")
            cursor.execute("DROP FUNCTION test_refuse_row()")


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_fails_part_way_is_a_503_and_leaves_no_row(client, user):
    # The database refuses the batch's last row, after the first ones were inserted.
    sub, secret = make_subscription(make_microsoft_calendar(user), "microsoft")
    items = [{"subscriptionId": sub.channel_id, "clientState": secret, "changeType": "updated",
              "resource": f"Users/1/Events/{n}"} for n in range(3)]
    with rows_refused("%Events/2%"):
        response = client.post("/webhooks/microsoft/", data=json.dumps({"value": items}),
                               content_type="application/json")
    assert response.status_code == 503
    assert _count_rows_from_another_connection("webhooks_webhooknotification") == 0
    sub.refresh_from_db()
    assert sub.last_notification_at is None


@pytest.mark.django_db(transaction=True)
def test_a_connection_killed_before_the_store_is_a_503_then_service_resumes(
        client, google_calendar, monkeypatch):
    sub, token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    real_store = ingest.store

    def store_after_the_server_killed_us(batch, **kwargs):
        pid = connection.connection.info.backend_pid
        admin = psycopg2.connect(**{k: v for k, v in connection.get_connection_params().items()
                                    if k in {"dbname", "user", "password", "host", "port"}})
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        admin.close()
        return real_store(batch, **kwargs)

    monkeypatch.setattr(ingest, "store", store_after_the_server_killed_us)
    killed = post(client, google_headers(sub.channel_id, token, n=33))
    monkeypatch.undo()
    assert killed.status_code == 503
    assert killed["Retry-After"] == "5"
    # The next request heals without waiting for the end-of-request clean-up: the kill
    # switch lookup meets the closed connection (InterfaceError), drops it, and the store
    # reconnects.
    assert post(client, google_headers(sub.channel_id, token, n=33)).status_code == 200
    # What the WSGI server does at the end of every request changes nothing after that.
    close_old_connections()
    retried = post(client, google_headers(sub.channel_id, token, n=33))
    assert retried.status_code == 200
    assert WebhookNotification.objects.filter(dedup_key=f"google:{sub.channel_id}:33").exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_redeliveries_store_one_row_and_all_get_a_2xx(google_calendar):
    from django.test import Client

    sub, token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    codes = []
    run_together(6, lambda i: codes.append(
        post(Client(), google_headers(sub.channel_id, token, n=77)).status_code))
    assert codes == [200] * 6
    assert WebhookNotification.objects.filter(subscription=sub).count() == 1


def deliver_google(client, user, google_calendar) -> int:
    sub, token = make_subscription(google_calendar, "google", "active", RESOURCE_ID)
    return post(client, google_headers(sub.channel_id, token, n=41)).status_code


def deliver_graph_batch(client, user, google_calendar) -> int:
    sub, secret = make_subscription(make_microsoft_calendar(user), "microsoft")
    items = [{"subscriptionId": sub.channel_id, "clientState": secret, "changeType": "updated",
              "resource": f"Users/1/Events/{n}"} for n in range(3)]
    return client.post("/webhooks/microsoft/", data=json.dumps({"value": items}),
                       content_type="application/json").status_code


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("deliver", [deliver_google, deliver_graph_batch],
                         ids=["google", "graph-batch"])
def test_a_stored_notification_wakes_a_listening_worker(client, user, google_calendar, deliver):
    params = connection.get_connection_params()
    listener = psycopg2.connect(**{k: v for k, v in params.items()
                                   if k in {"dbname", "user", "password", "host", "port"}})
    listener.autocommit = True
    try:
        with listener.cursor() as cursor:
            cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
        reset_all()
        assert deliver(client, user, google_calendar) in (200, 202)
        deadline = time.monotonic() + 5
        while not listener.notifies and time.monotonic() < deadline:
            select.select([listener], [], [], 0.1)
            listener.poll()
        assert [n.channel for n in listener.notifies] == [NOTIFY_CHANNEL]
    finally:
        listener.close()
