"""calendar_sync.locks: one holder per (namespace, id) across connections, reentrant for the
holder, released even when the work raises."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from calendar_sync.locks import advisory_lock

pytestmark = pytest.mark.django_db(transaction=True)


def held_elsewhere(namespace: int, key: int) -> bool:
    """Whether another connection (another thread) is refused the lock right now."""
    seen = {}

    def probe() -> None:
        try:
            with advisory_lock(namespace, key) as acquired:
                seen["acquired"] = acquired
        finally:
            connection.close()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(10)
    return not seen["acquired"]


def test_a_held_lock_is_refused_to_others_and_reentrant_for_its_holder():
    with advisory_lock(7, 42) as outer:
        with advisory_lock(7, 42) as inner:
            assert outer and inner
        assert held_elsewhere(7, 42)  # leaving the inner block did not release it
        assert not held_elsewhere(7, 43) and not held_elsewhere(8, 42)
    assert not held_elsewhere(7, 42)


def test_the_lock_is_released_when_the_work_raises():
    with pytest.raises(RuntimeError), advisory_lock(7, 42):
        raise RuntimeError("sync crashed")

    assert not held_elsewhere(7, 42)


def test_a_reconnect_asked_for_while_a_lock_is_held_never_gives_the_lock_away():
    from calendar_sync.db import drop_connection

    with advisory_lock(7, 44) as held:
        assert held
        drop_connection()  # e.g. recording a provider call failed mid-sync
        assert held_elsewhere(7, 44)  # the session, and its lock, are still this holder's
    drop_connection()  # outside the lock it does reconnect
    assert connection.connection is None
    assert not held_elsewhere(7, 44)
