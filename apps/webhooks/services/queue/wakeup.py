"""How the worker sleeps: until a PostgreSQL NOTIFY, a stop request, or a timeout."""

from __future__ import annotations

import logging
import os
import select

import psycopg2
from django.db import connection

log = logging.getLogger(__name__)

# The receivers NOTIFY this channel in the transaction that stores a notification.
NOTIFY_CHANNEL = "calendar_sync_notifications"


class Wakeup:
    """Sleep until a NOTIFY on our channel, a stop request, or the timeout.

    LISTEN uses its own connection: Django's may be closed and reopened between batches, and a
    LISTEN does not survive that. A self-pipe lets a signal handler cut the sleep short.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._pg = None

    def listen(self) -> None:
        """Start listening (idempotent); rows stored from now on wake ``wait``."""
        if self._pg is not None or connection.vendor != "postgresql":
            return
        try:
            self._pg = psycopg2.connect(**connection.get_connection_params())
            self._pg.autocommit = True
            with self._pg.cursor() as cursor:
                cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg2.Error as exc:
            log.warning("LISTEN unavailable, polling instead: %s", exc)
            self._pg = None

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout``; True when a NOTIFY arrived (a stop request or the timeout
        return False)."""
        self.listen()
        fds = [self._read] + ([self._pg] if self._pg is not None else [])
        try:
            ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        except (OSError, ValueError):
            ready = []
        if self._read in ready:
            try:
                while os.read(self._read, 512):
                    pass
            except BlockingIOError:
                pass
        if self._pg is not None and self._pg in ready:
            try:
                self._pg.poll()
                notified = bool(self._pg.notifies)
                self._pg.notifies.clear()
                return notified
            except Exception:  # noqa: BLE001 - connection lost: reconnect on the next wait
                self.close_listener()
        return False

    def wake(self) -> None:
        """Safe from a signal handler."""
        try:
            os.write(self._write, b"x")
        except OSError:
            pass

    def close_listener(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._pg = None

    def close(self) -> None:
        self.close_listener()
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
