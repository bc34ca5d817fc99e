"""Liveness checks behind ``GET /webhooks/health/`` (load balancer, Docker HEALTHCHECK).

Each check runs in its own thread with a deadline, so a database that hangs instead of
refusing still yields an answer in well under a second.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

CHECK_DEADLINE_SECONDS = 0.8
PROBE_KEY_SECONDS = 10  # a probe's key, if its delete is lost, expires on its own
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")


@dataclass
class CheckResult:
    name: str
    ok: bool
    critical: bool  # a failed critical check makes the service "fail", else "warn"
    duration_ms: int
    output: str = ""


def probe_database() -> None:
    """Raise unless the database answers a query (shared with the health monitor)."""
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def probe_cache() -> None:
    """Raise unless the cache returns what was just written (shared with the health monitor).
    A key of its own per probe: concurrent probes (several load balancers, the monitor) never
    overwrite each other's value and report a healthy cache as broken."""
    key, value = f"health:probe:{uuid.uuid4().hex}", "ok"
    cache.set(key, value, PROBE_KEY_SECONDS)
    try:
        if cache.get(key) != value:
            raise RuntimeError("cache did not return the value just written")
    finally:
        cache.delete(key)


def _database_in_thread() -> None:
    """The pool's threads keep their database session between probes (at most one per thread,
    ``max_workers`` per process): a probe costs one query, not a new session. A session that
    fails is dropped and the probe retried once on a fresh one (the database restarted)."""
    try:
        probe_database()
    except Exception:  # noqa: BLE001 - any failure: retry on a new session, then report it
        connection.close()
        try:
            probe_database()
        except Exception:
            connection.close()
            raise


def close_sessions() -> None:
    """Close the pool threads' database sessions (tests, before the test database is dropped).
    Each task waits at a barrier until all are running, so each lands on its own thread."""
    workers = _pool._max_workers
    barrier = threading.Barrier(workers, timeout=2)

    def close_here() -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass  # a thread busy with a hung probe: close what can be closed
        connection.close()

    for future in [_pool.submit(close_here) for _ in range(workers)]:
        future.result(timeout=5)


def _health_check_fresh() -> None:
    """Fail when the last completed health check is older than HEALTH_CHECK_MAX_AGE_SECONDS:
    nothing is alerting then (no scheduler runs). None yet (a fresh install) passes."""
    from calendar_sync.health_schedule import state  # the health cycle's own record

    try:
        last = state()["last_run_at"]
    except Exception:
        connection.close()  # a broken session: the next probe on this thread starts afresh
        raise
    age = (timezone.now() - last).total_seconds() if last else 0
    if age > settings.HEALTH_CHECK_MAX_AGE_SECONDS:
        raise StaleHealthCheck(f"last health check {int(age)} s ago")


class StaleHealthCheck(RuntimeError):
    pass


CHECKS = (("database", _database_in_thread, True), ("cache", probe_cache, False),
          ("health_check_age", _health_check_fresh, True))


def run_checks() -> list[CheckResult]:
    started = {name: time.perf_counter() for name, _, _ in CHECKS}
    futures = {name: (_pool.submit(fn), critical) for name, fn, critical in CHECKS}
    results = []
    for name, (future, critical) in futures.items():
        try:
            future.result(timeout=CHECK_DEADLINE_SECONDS)
            ok, output = True, ""
        except FutureTimeout:
            ok, output = False, "timed out"
        except Exception as exc:  # noqa: BLE001 - any failure of a probe is a failed check
            # The exception class only: messages can carry hostnames or credentials.
            ok, output = False, type(exc).__name__
        ms = int((time.perf_counter() - started[name]) * 1000)
        results.append(CheckResult(name, ok, critical, ms, output))
    return results


def overall_status(results: list[CheckResult]) -> str:
    if any(not r.ok and r.critical for r in results):
        return "fail"
    if any(not r.ok for r in results):
        return "warn"
    return "pass"
