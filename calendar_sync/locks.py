"""Named cross-process locks: PostgreSQL session advisory locks, keyed (namespace, id).

Session-level, not transaction-level: a lock is held across provider calls without keeping a
transaction open, and the server releases it if the process dies (kill -9). Like PostgreSQL's,
the lock is reentrant for its holder (one Django connection = one thread), so code holding a
calendar's lock may call code that takes it again. Other databases (SQLite, the single-process
embedded default) get the same semantics from an in-process table.

Each feature picks its own ``namespace`` (a 32-bit int), so equal ids never collide.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import Error, connection

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.05
# (namespace, key) -> (holding thread, depth): the in-process stand-in for other databases.
_held: dict[tuple[int, int], tuple[int, int]] = {}
_guard = threading.Lock()
# How many PostgreSQL advisory locks this thread's session holds (Django connections are
# per thread). While it is above zero the session must not be swapped for a new one.
_session = threading.local()


def session_locks_held() -> int:
    """Advisory locks held by this thread's database session."""
    return getattr(_session, "count", 0)


@contextmanager
def advisory_lock(namespace: int, key: int, *, wait: float = 0.0) -> Iterator[bool]:
    """Yield True when this thread now holds the lock, False when another holder kept it for
    ``wait`` seconds. Always released on the way out, exceptions included."""
    pair = (namespace & 0x7FFFFFFF, key & 0x7FFFFFFF)  # int4 arguments
    postgres = connection.vendor == "postgresql"
    try_once = _try_postgres if postgres else _try_local
    deadline = time.monotonic() + wait
    acquired = try_once(pair)
    while not acquired and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        acquired = try_once(pair)
    if acquired and postgres:
        _session.count = session_locks_held() + 1
    try:
        yield acquired
    finally:
        if acquired:
            (_release_postgres if postgres else _release_local)(pair)
            if postgres:
                _session.count = session_locks_held() - 1


def _try_postgres(pair: tuple[int, int]) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", list(pair))
        return bool(cursor.fetchone()[0])


def _release_postgres(pair: tuple[int, int]) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", list(pair))
    except Error:  # InterfaceError too: a connection closed under us is not a DatabaseError
        # The session is gone, and the server released its locks with it.
        log.warning("could not release advisory lock %s", pair)


def _try_local(pair: tuple[int, int]) -> bool:
    me = threading.get_ident()
    with _guard:
        holder, depth = _held.get(pair, (me, 0))
        if holder != me:
            return False
        _held[pair] = (me, depth + 1)
        return True


def _release_local(pair: tuple[int, int]) -> None:
    with _guard:
        holder, depth = _held[pair]
        if depth <= 1:
            del _held[pair]
        else:
            _held[pair] = (holder, depth - 1)
