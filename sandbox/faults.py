"""Fault configuration and the seeded decisions made from it.

Error draws and push faults use separate generators so that, for example, a reorder shuffle
in a delivery thread never shifts which request gets the next injected 500: a given sequence of
requests meets the same faults on every run with the same seed.
"""

from __future__ import annotations

import copy
import random
import threading
from typing import Any

ENDPOINT_KEYS = (
    "oauth.authorize", "oauth.token", "oauth.revoke",
    "google.calendarList.list", "google.events.list", "google.events.get",
    "google.events.insert", "google.events.patch", "google.events.delete",
    "google.events.watch", "google.channels.stop",
    "graph.calendars.list", "graph.events.get", "graph.events.create", "graph.events.patch",
    "graph.events.delete", "graph.events.delta", "graph.subscriptions.list",
    "graph.subscriptions.create", "graph.subscriptions.renew", "graph.subscriptions.delete",
    "graph.subscriptions.reauthorize",
    "sinks.slack", "sinks.webhook", "sinks.pagerduty",
)

# Keys that trigger something once instead of configuring; the admin module carries them out.
ACTION_KEYS = ("revoke", "expire_sync_tokens", "expire_subscription", "lifecycle")

_NUMBER_KNOBS: dict[str, tuple[type, float]] = {
    # name: (type, minimum)
    "retry_after_seconds": (float, 0),
    "access_token_ttl_seconds": (int, 1),
    "push_retry_base_seconds": (float, 0),
    "push_max_attempts": (int, 1),
    "push_timeout_seconds": (float, 0.01),
    "graph_push_timeout_seconds": (float, 0.01),
    "validation_timeout_seconds": (float, 0.01),
    "notification_batch_ms": (int, 0),
    "auto_reauthorization_minutes": (float, 0),
}


def _defaults() -> dict[str, Any]:
    return {
        "error_rates": {},
        "fail_next": {},
        "latency_ms": {},
        "retry_after_seconds": 1.0,
        "access_token_ttl_seconds": 3600,
        "notifications": {"drop_rate": 0.0, "duplicate_rate": 0.0, "reorder": False,
                          "delay_ms": 0, "reorder_window_ms": 200},
        "push_retry_base_seconds": 1.0,
        "push_max_attempts": 8,
        "push_timeout_seconds": 10.0,
        "graph_push_timeout_seconds": 3.0,
        "validation_timeout_seconds": 10.0,
        "notification_batch_ms": 100,
        "auto_reauthorization_minutes": 15.0,
        "require_https": False,
    }


class FaultError(ValueError):
    """A malformed fault request; answered with 400."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_key(key: Any, allow_star: bool = True) -> str:
    if key == "*" and allow_star:
        return key
    if key not in ENDPOINT_KEYS:
        raise FaultError(f"unknown endpoint key {key!r}")
    return str(key)


def _check_code(code: Any) -> int:
    try:
        value = int(code)
    except (TypeError, ValueError):
        raise FaultError(f"status code {code!r} is not an integer")
    if not 400 <= value <= 599:
        raise FaultError(f"status code {value} is not an error status")
    return value


class Faults:
    def __init__(self, seed: int = 0) -> None:
        self.lock = threading.Lock()
        self.reset(seed)

    def reset(self, seed: int) -> None:
        with self.lock:
            self.config = _defaults()
            self._reseed(seed)

    def _reseed(self, seed: int) -> None:
        self.seed = seed
        self.error_rng = random.Random(f"{seed}:errors")
        self.push_rng = random.Random(f"{seed}:push")

    def get(self, name: str) -> Any:
        with self.lock:
            return self.config[name]

    def notifications(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.config["notifications"])

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            data = copy.deepcopy(self.config)
            data["seed"] = self.seed
            return data

    # --- updates --------------------------------------------------------------------------

    def update(self, payload: dict[str, Any]) -> None:
        """Validate everything first, then apply, so a 400 leaves the configuration as it was."""
        with self.lock:
            new = _defaults() if payload.get("clear") else copy.deepcopy(self.config)
            seed = self.seed
            for name, value in payload.items():
                if name in ACTION_KEYS or name == "clear":
                    continue
                if name == "seed":
                    if not isinstance(value, int) or isinstance(value, bool):
                        raise FaultError("seed must be an integer")
                    seed = value
                elif name == "error_rates":
                    self._merge_rates(new["error_rates"], value)
                elif name == "fail_next":
                    self._merge_fail_next(new["fail_next"], value)
                elif name == "latency_ms":
                    self._merge_latency(new["latency_ms"], value)
                elif name == "notifications":
                    self._merge_notifications(new["notifications"], value)
                elif name == "require_https":
                    if not isinstance(value, bool):
                        raise FaultError("require_https must be a boolean")
                    new[name] = value
                elif name in _NUMBER_KNOBS:
                    kind, minimum = _NUMBER_KNOBS[name]
                    if not _is_number(value) or value < minimum:
                        raise FaultError(f"{name} must be a number >= {minimum}")
                    new[name] = kind(value)
                else:
                    raise FaultError(f"unknown fault key {name!r}")
            self.config = new
            if "seed" in payload:
                self._reseed(seed)

    @staticmethod
    def _merge_rates(target: dict[str, Any], value: Any) -> None:
        if not isinstance(value, dict):
            raise FaultError("error_rates must be an object")
        for key, rates in value.items():
            _check_key(key)
            if not rates:
                target.pop(key, None)
                continue
            if not isinstance(rates, dict):
                raise FaultError(f"error_rates[{key!r}] must be an object of code: probability")
            clean: dict[str, float] = {}
            for code, p in rates.items():
                if not _is_number(p) or not 0 <= p <= 1:
                    raise FaultError(f"probability for {code} must be between 0 and 1")
                clean[str(_check_code(code))] = float(p)
            if sum(clean.values()) > 1:
                raise FaultError(f"probabilities for {key!r} add up to more than 1")
            target[key] = clean

    @staticmethod
    def _merge_fail_next(target: dict[str, Any], value: Any) -> None:
        if not isinstance(value, dict):
            raise FaultError("fail_next must be an object")
        for key, codes in value.items():
            _check_key(key, allow_star=False)
            if not codes:
                target.pop(key, None)
                continue
            if not isinstance(codes, list):
                raise FaultError(f"fail_next[{key!r}] must be a list of status codes")
            target[key] = [_check_code(c) for c in codes]

    @staticmethod
    def _merge_latency(target: dict[str, Any], value: Any) -> None:
        if not isinstance(value, dict):
            raise FaultError("latency_ms must be an object")
        for key, ms in value.items():
            _check_key(key)
            if ms is None or ms == 0:
                target.pop(key, None)
            elif not _is_number(ms) or ms < 0:
                raise FaultError(f"latency_ms[{key!r}] must be a non-negative number")
            else:
                target[key] = ms

    @staticmethod
    def _merge_notifications(target: dict[str, Any], value: Any) -> None:
        if not isinstance(value, dict):
            raise FaultError("notifications must be an object")
        for name, v in value.items():
            if name in ("drop_rate", "duplicate_rate"):
                if not _is_number(v) or not 0 <= v <= 1:
                    raise FaultError(f"notifications.{name} must be between 0 and 1")
                target[name] = float(v)
            elif name == "reorder":
                if not isinstance(v, bool):
                    raise FaultError("notifications.reorder must be a boolean")
                target[name] = v
            elif name in ("delay_ms", "reorder_window_ms"):
                if not _is_number(v) or v < 0:
                    raise FaultError(f"notifications.{name} must be a non-negative number")
                target[name] = v
            else:
                raise FaultError(f"unknown notifications key {name!r}")

    # --- decisions ------------------------------------------------------------------------

    def latency_seconds(self, key: str) -> float:
        with self.lock:
            table = self.config["latency_ms"]
            return float(table.get(key, table.get("*", 0))) / 1000

    def pick_error(self, key: str) -> int | None:
        """The status this call must fail with, or None. fail_next wins over error_rates."""
        with self.lock:
            queued = self.config["fail_next"].get(key)
            if queued:
                code = queued.pop(0)
                if not queued:
                    del self.config["fail_next"][key]
                return code
            table = self.config["error_rates"]
            rates = table.get(key, table.get("*"))
            if not rates:
                return None
            # One draw per call against the cumulative table, in a fixed code order.
            draw = self.error_rng.random()
            acc = 0.0
            for code in sorted(rates):
                acc += rates[code]
                if draw < acc:
                    return int(code)
            return None
