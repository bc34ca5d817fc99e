"""Races made on purpose: the same work started in several threads at one instant."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_together(n: int, work: Callable[[int], object]) -> None:
    """Start ``n`` threads at the same instant, each with its own database connection;
    ``work(i)`` in thread ``i``. Fails with what any of them raised."""
    from django.db import connections

    barrier = threading.Barrier(n)
    errors = []

    def body(i):
        try:
            barrier.wait()
            work(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()  # each thread had its own

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
