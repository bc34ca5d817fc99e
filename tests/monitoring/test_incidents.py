"""The incident state machine alone: what one check does to one incident, whichever store
keeps it (rows, or the cache-or-file store while the database is down)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apps.monitoring.models import IncidentEvent, Level
from apps.monitoring.services.incidents import step

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
RULES = {"repeat": timedelta(hours=4), "resolve_after": timedelta(minutes=10)}


def alert(level: str = Level.WARNING) -> dict:
    return {"key": "failed_subscriptions", "level": level, "title": "t", "message": "m"}


def test_a_new_condition_opens_an_incident_and_nothing_reported_keeps_nothing():
    opened = step(None, alert(), T0, **RULES)
    assert opened.event == IncidentEvent.OPENED and opened.state.last_notified_at == T0
    assert step(None, None, T0, **RULES) is None


def test_a_rise_escalates_at_once_and_the_same_level_repeats_only_after_the_interval():
    state = step(None, alert(), T0, **RULES).state
    quiet = step(state, alert(), T0 + timedelta(hours=1), **RULES)
    assert quiet.event is None and quiet.catch_up
    rise = step(state, alert(Level.CRITICAL), T0 + timedelta(minutes=1), **RULES)
    assert rise.event == IncidentEvent.ESCALATED
    assert rise.state.notified_level == Level.CRITICAL
    repeat = step(state, alert(), T0 + timedelta(hours=4), **RULES)
    assert repeat.event == IncidentEvent.REPEATED


def test_a_cleared_condition_resolves_only_after_staying_clear_for_the_delay():
    state = step(None, alert(), T0, **RULES).state
    clearing = step(state, None, T0 + timedelta(minutes=1), **RULES)
    assert clearing.event is None and clearing.state.clear_since == T0 + timedelta(minutes=1)
    back = step(clearing.state, alert(), T0 + timedelta(minutes=5), **RULES)
    assert back.state.clear_since is None and back.event is None
    still = step(clearing.state, None, T0 + timedelta(minutes=10), **RULES)
    assert still.event is None and still.state.resolved_at is None
    resolved = step(still.state, None, T0 + timedelta(minutes=11), **RULES)
    assert resolved.event == IncidentEvent.RESOLVED
    assert resolved.state.resolved_at == T0 + timedelta(minutes=11)
