"""Recovering from a broken database connection.

After a PostgreSQL restart the old connection fails with ``OperationalError`` once and with
``InterfaceError`` ("connection already closed") from then on — and ``InterfaceError`` is not
a ``DatabaseError``. Code that outlives such an error catches ``django.db.Error`` (both) and
calls ``drop_connection``; the next query opens a new connection.
"""

from __future__ import annotations

from django.db import connection

from calendar_sync.locks import session_locks_held


def drop_connection() -> None:
    """Close this thread's connection so the next query reconnects. Inside a transaction the
    connection is left to the transaction's owner, whose exit rolls back and closes it. So is
    a session holding advisory locks: a silent reconnect would go on without them (another
    host could take the job or the calendar), so the holder's next query fails instead, and
    whoever catches that outside the lock drops the connection."""
    if not connection.in_atomic_block and not session_locks_held():
        connection.close()
