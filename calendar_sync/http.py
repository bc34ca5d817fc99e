"""The one place outbound HTTP goes through (provider APIs, OAuth, alert channels).

One ``requests.Session`` per process and thread (connection reuse, fork-safe), timeouts on
every call, and a ``ProviderApiCall`` row per provider call so that the monitor's API figures
are measured, never assumed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from django.apps import apps
from django.conf import settings
from django.db import Error

from calendar_sync import metrics, sli
from calendar_sync.db import drop_connection

log = logging.getLogger(__name__)
_local = threading.local()


def session() -> requests.Session:
    """This thread's session; a forked child builds its own instead of sharing sockets."""
    if getattr(_local, "pid", None) != os.getpid():
        _local.session = requests.Session()
        _local.pid = os.getpid()
    return _local.session


def default_error_kind(status: int | None) -> str:
    if status is None:
        return "network"
    if status < 400:
        return ""
    if status == 429:
        return "rate_limited"
    if status == 401:
        return "auth"
    if status == 404:
        return "not_found"
    if status == 410:
        return "cursor_expired"
    if status >= 500:
        return "transient"
    return "client_error"


def record_call(provider: str, operation: str, status: int | None, duration_ms: int,
                error_kind: str, account_id: int | None = None) -> None:
    """Store one call record; a failure to record never fails the call itself."""
    metrics.PROVIDER_CALLS.labels(provider, operation, error_kind).inc()
    metrics.PROVIDER_CALL_SECONDS.labels(provider).observe(duration_ms / 1000)
    model = apps.get_model("monitoring", "ProviderApiCall")
    try:
        model.objects.create(
            provider=provider, operation=operation, status_code=status,
            duration_ms=duration_ms, error_kind=error_kind, account_id=account_id,
        )
    except Error:  # InterfaceError too: a connection closed under it is not a DatabaseError
        log.warning("could not record provider call %s %s", provider, operation)
        drop_connection()
    failed = bool(error_kind) and error_kind not in sli.EXPECTED_ERROR_KINDS
    sli.record(provider, api_calls=1, api_errors=int(failed), api_ms_sum=duration_ms)


def request(method: str, url: str, *, provider: str, operation: str,
            account_id: int | None = None,
            classify: Callable[[requests.Response], str] | None = None,
            timeout: tuple[float, float] | None = None, **kwargs: Any) -> requests.Response:
    """Send one request and record it. Network errors propagate as ``requests`` exceptions
    (after being recorded); the caller maps them to its typed errors."""
    timeout = timeout or (settings.PROVIDER_CONNECT_TIMEOUT_SECONDS,
                          settings.PROVIDER_READ_TIMEOUT_SECONDS)
    started = time.perf_counter()
    try:
        response = session().request(method, url, timeout=timeout, **kwargs)
    except requests.RequestException:
        record_call(provider, operation, None, _ms(started), "network", account_id)
        raise
    kind = classify(response) if classify else default_error_kind(response.status_code)
    record_call(provider, operation, response.status_code, _ms(started), kind, account_id)
    return response


def post_json(url: str, payload: Any, *, timeout: float = 10.0,
              headers: dict[str, str] | None = None) -> requests.Response:
    """Plain POST for alert channels (not a provider call, so not recorded as one)."""
    return session().post(url, json=payload, timeout=timeout, headers=headers or {})


def get(url: str, *, timeout: float = 10.0) -> requests.Response:
    """Plain GET for our own endpoints (post-deployment checks); not a provider call."""
    return session().get(url, timeout=timeout)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
