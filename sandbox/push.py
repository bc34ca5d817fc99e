"""Outbound notification delivery: a small pool of threads, retries with backoff, push faults.

Requests only enqueue; workers send. A slow receiver therefore never blocks the API, and
`reset()`/`stop()` can drop everything pending at once (a generation number makes results of
deliveries still in flight from before a reset land nowhere).

Per-lane ordering: deliveries sharing a lane (one Google channel, one Graph URL) go out one at a
time in submission order, so receivers see message numbers increase unless the `reorder` fault
is on. A delivery waiting for a retry does not hold its lane.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .faults import Faults

GOOGLE_SUCCESS = frozenset({102, 200, 201, 202, 204})
GOOGLE_RETRY = frozenset({500, 502, 503, 504})


@dataclass
class Delivery:
    url: str
    body: bytes
    headers: dict[str, str]
    lane: str
    stat_keys: list[str]  # channel / subscription ids this delivery counts for
    policy: str  # "google" | "graph"
    timeout: float
    still_live: Callable[[], bool] | None = None
    attempt: int = 0
    generation: int = 0


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    item: Any = field(compare=False)  # Delivery or a zero-argument callable


@dataclass
class PostResult:
    status: int | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    timed_out: bool = False


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> PostResult:
    """One POST with the standard library; never raises."""
    parts = urlsplit(url)
    conn_cls = (http.client.HTTPSConnection if parts.scheme == "https"
                else http.client.HTTPConnection)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = conn_cls(parts.hostname or "localhost", parts.port, timeout=timeout)
    try:
        conn.request("POST", target, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return PostResult(resp.status, data, {k.lower(): v for k, v in resp.getheaders()})
    except TimeoutError as exc:
        return PostResult(None, error=f"timeout: {exc}", timed_out=True)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return PostResult(None, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def _new_stats() -> dict[str, int]:
    return {"queued": 0, "sent": 0, "failed": 0, "dropped": 0, "duplicated": 0,
            "discarded": 0, "attempts": 0, "retries": 0}


class Pusher:
    def __init__(self, faults: Faults, workers: int = 4) -> None:
        self.faults = faults
        self.workers = workers
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._generation = 0
        self._clear()

    def _clear(self) -> None:
        self._heap: list[_Entry] = []
        self._busy: set[str] = set()
        self._waiting: dict[str, deque[_Entry]] = defaultdict(deque)
        self._reorder: list[Delivery] = []
        self._reorder_flush_pending = False
        self._in_flight = 0
        self.stats: defaultdict[str, dict[str, int]] = defaultdict(_new_stats)
        self.log: deque[dict[str, Any]] = deque(maxlen=100)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        with self._cv:
            self._stopping = False
            for i in range(self.workers):
                t = threading.Thread(target=self._run, name=f"sandbox-push-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._generation += 1
            self._clear()
            self._cv.notify_all()
        # Workers blocked on a slow receiver are daemons; do not wait for their timeout.
        for t in self._threads:
            t.join(timeout=0.5)
        self._threads = []

    def reset(self) -> None:
        with self._cv:
            self._generation += 1
            self._clear()
            self._cv.notify_all()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """True once nothing is queued, buffered or in flight (retries count as queued)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._heap or self._in_flight or self._reorder or any(self._waiting.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
            return True

    # --- submission -----------------------------------------------------------------------

    def submit(self, delivery: Delivery) -> None:
        """Queue a push, applying the notification faults (drop, duplicate, delay, reorder)."""
        cfg = self.faults.notifications()
        with self.faults.lock:
            # Both draws always happen so one rate never shifts the other's stream.
            drop = self.faults.push_rng.random() < cfg["drop_rate"]
            dup = self.faults.push_rng.random() < cfg["duplicate_rate"]
        with self._cv:
            delivery.generation = self._generation
            for key in delivery.stat_keys:
                self.stats[key]["queued"] += 1
            if drop:
                self._count(delivery, "dropped")
                self._log(delivery, None, None, "dropped")
                return
            copies = [delivery]
            if dup:
                self._count(delivery, "duplicated")
                copies.append(Delivery(**{**delivery.__dict__, "headers": dict(delivery.headers)}))
            due = time.monotonic() + float(cfg["delay_ms"]) / 1000
            for item in copies:
                if cfg["reorder"]:
                    self._reorder.append(item)
                else:
                    self._push(due, item)
            if cfg["reorder"] and not self._reorder_flush_pending:
                self._reorder_flush_pending = True
                window = max(float(cfg["reorder_window_ms"]), float(cfg["delay_ms"])) / 1000
                self._push(time.monotonic() + window, self._flush_reorder)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run `fn` on a worker after `delay` seconds, unless a reset comes first."""
        with self._cv:
            self._push(time.monotonic() + delay, fn)

    def _push(self, due: float, item: Any) -> None:
        heapq.heappush(self._heap, _Entry(due, next(self._seq), item))
        self._cv.notify()

    def _flush_reorder(self) -> None:
        with self._cv:
            batch, self._reorder = self._reorder, []
            self._reorder_flush_pending = False
            with self.faults.lock:
                self.faults.push_rng.shuffle(batch)
            now = time.monotonic()
            for item in batch:  # fresh sequence numbers fix the shuffled order
                self._push(now, item)

    # --- workers --------------------------------------------------------------------------

    def _next(self) -> tuple[Any, int] | None:
        with self._cv:
            while not self._stopping:
                now = time.monotonic()
                if self._heap and self._heap[0].due <= now:
                    entry = heapq.heappop(self._heap)
                    item = entry.item
                    if isinstance(item, Delivery):
                        if item.lane in self._busy:
                            self._waiting[item.lane].append(entry)
                            continue
                        self._busy.add(item.lane)
                    self._in_flight += 1
                    return item, self._generation
                timeout = self._heap[0].due - now if self._heap else None
                self._cv.wait(timeout)
            return None

    def _run(self) -> None:
        while True:
            nxt = self._next()
            if nxt is None:
                return
            item, generation = nxt
            try:
                if isinstance(item, Delivery):
                    self._deliver(item)
                else:
                    item()
            except Exception as exc:  # a bug here must not kill the worker
                print(f"sandbox push worker error: {exc!r}", file=sys.stderr)
            finally:
                with self._cv:
                    if generation == self._generation:
                        self._in_flight -= 1
                        if isinstance(item, Delivery):
                            self._release(item.lane)
                    self._cv.notify_all()

    def _release(self, lane: str) -> None:
        self._busy.discard(lane)
        waiting = self._waiting.get(lane)
        if waiting:
            entry = waiting.popleft()
            if not waiting:
                del self._waiting[lane]
            heapq.heappush(self._heap, entry)  # keeps its original (due, seq): still first

    def _deliver(self, d: Delivery) -> None:
        if d.generation != self._generation:
            return
        if d.still_live is not None and not d.still_live():
            with self._cv:
                if d.generation == self._generation:
                    self._count(d, "discarded")
                    self._log(d, None, None, "discarded")
            return
        timeout = d.timeout
        result = post(d.url, d.body, d.headers, timeout)
        if d.policy == "google":
            ok = result.status in GOOGLE_SUCCESS
            retryable = result.status is None or result.status in GOOGLE_RETRY
        else:
            ok = result.status is not None and 200 <= result.status < 300
            retryable = not ok
        with self._cv:
            if d.generation != self._generation:
                return
            self._count(d, "attempts")
            d.attempt += 1
            max_attempts = int(self.faults.get("push_max_attempts"))
            if ok:
                outcome = "sent"
            elif retryable and d.attempt < max_attempts:
                outcome = "retry"
                base = float(self.faults.get("push_retry_base_seconds"))
                self._count(d, "retries")
                self._push(time.monotonic() + base * 2 ** (d.attempt - 1), d)
            else:
                outcome = "failed"
            if outcome != "retry":
                self._count(d, outcome)
            self._log(d, result.status, result.error, outcome)

    def _count(self, d: Delivery, name: str) -> None:
        for key in d.stat_keys:
            self.stats[key][name] += 1

    def _log(self, d: Delivery, status: int | None, error: str | None, outcome: str) -> None:
        self.log.append({"at": time.time(), "lane": d.lane, "url": d.url,
                         "attempt": d.attempt, "status": status, "error": error,
                         "outcome": outcome, "keys": list(d.stat_keys)})

    def summary(self) -> tuple[dict[str, dict[str, int]], list[dict[str, Any]]]:
        with self._cv:
            return {k: dict(v) for k, v in self.stats.items()}, list(self.log)
