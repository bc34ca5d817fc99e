"""A slow identity provider must not block the account row: the token refresh holds no
transaction or row lock across its HTTP call, and a rotated Microsoft refresh token is still
never spent twice."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.calendars.models import CalendarAccount
from apps.calendars.providers.clients import get_client

pytestmark = pytest.mark.django_db(transaction=True)  # refreshes in their own threads


def _refresh_in_thread(pk: int, results: list) -> threading.Thread:
    def run() -> None:
        try:
            client = get_client(CalendarAccount.objects.get(pk=pk))
            results.append(client.ensure_access_token())
        except Exception as exc:  # noqa: BLE001 - reported by the test's assertion
            results.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_other_writers_of_the_account_are_not_blocked_by_a_slow_token_endpoint(
        connect, sandbox_admin):
    account, _ = connect("microsoft", "slow@example.com")
    CalendarAccount.objects.filter(pk=account.pk).update(token_expires_at=timezone.now())
    sandbox_admin.faults(latency_ms={"oauth.token": 3000})
    results: list = []
    threads = [_refresh_in_thread(account.pk, results) for _ in range(2)]
    time.sleep(1.0)  # both are now refreshing: one in the token call, one waiting for it

    started = time.monotonic()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '1s'")
        CalendarAccount.objects.filter(pk=account.pk).update(last_error="backoff noted")
    writer_waited = time.monotonic() - started
    for thread in threads:
        thread.join(30)

    assert writer_waited < 0.5
    stored = CalendarAccount.objects.get(pk=account.pk)
    assert stored.status == "active" and stored.last_error == "backoff noted"
    # One token call rotated the refresh token; the other refresher adopted its result.
    assert results == [stored.access_token, stored.access_token]
    assert stored.refresh_token != account.refresh_token


def test_a_reconnection_during_the_token_call_is_not_overwritten(connect, sandbox_admin):
    account, _ = connect("microsoft", "again@example.com")
    CalendarAccount.objects.filter(pk=account.pk).update(token_expires_at=timezone.now())
    sandbox_admin.faults(latency_ms={"oauth.token": 1500})
    results: list = []
    thread = _refresh_in_thread(account.pk, results)
    time.sleep(0.5)
    sandbox_admin.faults(latency_ms={"oauth.token": 0})
    reconnected, _ = connect("microsoft", "again@example.com")  # the user reconnects
    thread.join(30)

    stored = CalendarAccount.objects.get(pk=account.pk)
    assert stored.refresh_token == reconnected.refresh_token
    assert stored.access_token == reconnected.access_token
