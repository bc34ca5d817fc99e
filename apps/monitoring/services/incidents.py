"""The incident state machine: one pure function, whatever keeps the incident.

``step`` takes an incident's state (None: no open incident for the key), what this check says
about its condition (the alert, or None: not reported) and the time, and returns the next state
with the event to broadcast. It reads no clock and no store: the database rows and the offline
store (cache or file, while the database is down) both apply it, so the two can never disagree
about when an incident opens, escalates, repeats, clears or resolves.

Damping against flapping: a condition no longer reported only starts "clearing"
(``clear_since``); the incident resolves once it has stayed clear for ``resolve_after``. A
condition that returns meanwhile resets ``clear_since`` and sends nothing (the repeat interval
still applies, a rise in level still escalates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from apps.monitoring.models import LEVEL_RANK, IncidentEvent

# attempt number, succeeded, permanent failure, error text
Recorder = Callable[[int, bool, bool, str], None]


class Delivery(NamedTuple):
    """One delivery attempt, as both stores keep it."""

    channel: str
    event: str
    succeeded: bool
    permanent: bool


@dataclass(frozen=True)
class IncidentState:
    key: str
    level: str
    title: str
    message: str
    opened_at: datetime
    notified_level: str
    last_notified_at: datetime | None
    clear_since: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class Step:
    state: IncidentState
    event: IncidentEvent | None = None  # None: change the state quietly
    # Nothing new to say, but channels that missed the last broadcast are owed it.
    catch_up: bool = False


def step(state: IncidentState | None, alert: dict | None, now: datetime, *,
         repeat: timedelta, resolve_after: timedelta) -> Step | None:
    """The next state of one incident; None when there is nothing to keep (no incident, no
    alert)."""
    if alert is None:
        return None if state is None else _clear(state, now, resolve_after)
    if state is None:
        return Step(IncidentState(key=alert["key"], level=alert["level"], title=alert["title"],
                                  message=alert["message"], opened_at=now,
                                  notified_level=alert["level"], last_notified_at=now),
                    IncidentEvent.OPENED)
    reported = replace(state, level=alert["level"], title=alert["title"],
                       message=alert["message"], clear_since=None)
    if LEVEL_RANK[alert["level"]] > LEVEL_RANK.get(state.notified_level, 0):
        return Step(replace(reported, notified_level=alert["level"], last_notified_at=now),
                    IncidentEvent.ESCALATED)
    if state.last_notified_at is None or now - state.last_notified_at >= repeat:
        return Step(replace(reported, last_notified_at=now), IncidentEvent.REPEATED)
    return Step(reported, catch_up=True)


def _clear(state: IncidentState, now: datetime, resolve_after: timedelta) -> Step:
    clearing = state if state.clear_since else replace(state, clear_since=now)
    if now - clearing.clear_since >= resolve_after:
        return Step(replace(clearing, resolved_at=now), IncidentEvent.RESOLVED)
    return Step(clearing)
