"""What one process remembers for a short while to spare a round trip or a repeated action.

The receivers and the subscription flow keep a few such memories: the kill switch's stored
override, recently read subscriptions, when the queue last woke the worker, a pause of the
best-effort writes after a database failure, and the rate limiter's view of an unreachable
cache. Each is a ``TTLCache``; ``reset_all`` forgets what every one of them holds, so a test
starts from a fresh process's state without each module carrying its own reset function.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Hashable

_every: weakref.WeakSet[TTLCache] = weakref.WeakSet()


class TTLCache:
    """A bounded, thread-safe map whose entries expire (monotonic clock)."""

    def __init__(self, max_entries: int = 100) -> None:
        self.max_entries = max_entries
        self.lock = threading.RLock()
        self._entries: dict[Hashable, tuple[float, object]] = {}
        _every.add(self)

    def get(self, key: Hashable, default: object = None) -> object:
        """The entry's value while it has not expired, else ``default``."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return default
        return entry[1]

    def last(self, key: Hashable, default: object = None) -> object:
        """The entry's value even past its expiry: the last thing known."""
        entry = self._entries.get(key)
        return default if entry is None else entry[1]

    def put(self, key: Hashable, value: object, ttl: float) -> None:
        with self.lock:
            if key not in self._entries and len(self._entries) >= self.max_entries:
                self._entries.clear()  # crude, but bounded, and entries are cheap to re-read
            self._entries[key] = (time.monotonic() + ttl, value)

    def add(self, key: Hashable, value: object, ttl: float) -> bool:
        """Put unless a live entry is there; whether it was put (a once-per-``ttl`` gate)."""
        with self.lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > time.monotonic():
                return False
            self.put(key, value, ttl)
            return True

    def forget(self, key: Hashable) -> None:
        with self.lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self.lock:
            self._entries.clear()


def reset_all() -> None:
    """Forget what every process-wide cache holds."""
    for cache in list(_every):
        cache.clear()
