"""Where incidents live while the database is down.

The health check must still alert when the database is unreachable, and still only once: what
was sent is kept in the cache (Redis, shared by every host), or in a JSON file under VAR_DIR when
the cache is down too. When the database answers again the alert manager turns these records
into ``Incident`` and ``AlertDelivery`` rows and then resolves what has cleared.

The resolve delay (ALERT_RESOLVE_AFTER_SECONDS) applies here too: an entry whose condition is
not reported gets a ``clear_since`` stamp and is resolved only once that is old enough. Offline,
only ``database_down`` and ``cache_down`` can be judged, and ``database_down`` is reported at every
offline check, so it clears once the database answers, as a row. While an incident that began
offline is still open as a row (e.g. ``database_down`` clearing), the store keeps a *mirror* of it
(``mirror``: its id, state and deliveries, marked ``imported``): a database that drops again
within the delay continues that incident — no second "opened" — instead of opening a new one.
The mirror is dropped once the row is resolved. Rows opened while the database was up are not
mirrored: during an outage their conditions cannot be judged, they wait (clearing or not) for
the database.

Known limit: if the cache is down while writing and back (empty) while reading, the file is not
consulted and one message may be repeated; both stores failing at once only costs duplicates,
never silence.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.utils.dateparse import parse_datetime

from apps.monitoring.channels.base import LEVEL_RANK
from apps.monitoring.services.health_rules import RECOMMENDATIONS

if TYPE_CHECKING:
    from apps.monitoring.channels import Channel
    from apps.monitoring.models import Incident
    from apps.monitoring.services.alerting import AlertManager

log = logging.getLogger(__name__)

CACHE_KEY = "monitoring:offline_incidents"


def _file() -> Path:
    return Path(settings.VAR_DIR) / "monitoring" / "offline_incidents.json"


def load() -> list[dict]:
    try:
        value = cache.get(CACHE_KEY)
        return json.loads(value) if value else []
    except Exception:  # noqa: BLE001 - any cache failure: fall back to the file
        log.warning("offline incident store: cache unavailable, reading the file")
    try:
        return json.loads(_file().read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        log.exception("offline incident store: unreadable file")
        return []


def save(incidents: list[dict]) -> None:
    text = json.dumps(incidents, sort_keys=True)
    try:
        # No expiry: the state must outlive an outage of any length.
        cache.set(CACHE_KEY, text, None)
        return
    except Exception:  # noqa: BLE001 - any cache failure: fall back to the file
        log.warning("offline incident store: cache unavailable, writing the file")
    path = _file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        log.exception("offline incident store: cannot write %s", path)


def clear() -> None:
    try:
        cache.delete(CACHE_KEY)
    except Exception:  # noqa: BLE001
        log.warning("offline incident store: cache unavailable while clearing")
    try:
        _file().unlink(missing_ok=True)
    except OSError:
        log.exception("offline incident store: cannot remove the file")


def process_offline(manager: AlertManager, alerts: dict[str, dict]) -> None:
    """The alert manager's open / escalate / repeat / resolve rules, on the offline store.

    Only what can be judged without the database is in ``alerts`` then (database_down,
    cache_down); incidents opened while the database was up are left for when it is back.
    """
    entries = load()
    open_entries = {e["key"]: e for e in entries if not e.get("resolved_at")}
    now, stamp = manager.now, manager.now.isoformat()
    try:
        for key, alert in alerts.items():
            entry = open_entries.get(key)
            if entry is None:
                entry = {"key": key, "level": alert["level"], "title": alert["title"],
                         "message": alert["message"],
                         "details": {"value": alert["value"],
                                     "recommendation": RECOMMENDATIONS.get(key, "")},
                         "opened_at": stamp, "last_notified_at": stamp,
                         "notified_level": alert["level"], "resolved_at": None,
                         "clear_since": None, "deliveries": []}
                entries.append(entry)
                _broadcast(manager, entry, "opened", manager.targets(entry["level"]))
                continue
            # clear_since None: back while clearing, the incident simply stays open.
            entry.update(level=alert["level"], title=alert["title"], message=alert["message"],
                         clear_since=None)
            rises = LEVEL_RANK[alert["level"]] > LEVEL_RANK[entry["notified_level"]]
            last = parse_datetime(entry["last_notified_at"])
            if rises or now - last >= manager.repeat:
                entry["last_notified_at"] = stamp
                entry["notified_level"] = max(entry["notified_level"], alert["level"],
                                              key=LEVEL_RANK.__getitem__)
                event = "escalated" if rises else "repeated"
                _broadcast(manager, entry, event, manager.targets(entry["level"]))
            else:
                _catch_up(manager, entry)
        for key, entry in open_entries.items():
            if key not in alerts:
                _clear(manager, entry)
    finally:
        save(entries)


def _clear(manager: AlertManager, entry: dict) -> None:
    """The alert manager's resolve delay: stamp, then resolve once clear for long enough."""
    if not entry.get("clear_since"):
        entry["clear_since"] = manager.now.isoformat()
    if manager.now - parse_datetime(entry["clear_since"]) < manager.resolve_after:
        return
    entry["resolved_at"] = manager.now.isoformat()
    told = {d["channel"] for d in entry["deliveries"] if d["succeeded"]}
    _broadcast(manager, entry, "resolved", [c for c in manager.channels if c.name in told])


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def incident_state(entry: dict) -> dict:
    """An entry's fields as ``Incident`` field values (for creating or updating the row)."""
    return {"level": entry["level"], "title": entry["title"], "message": entry["message"],
            "opened_at": parse_datetime(entry["opened_at"]),
            "notified_level": entry["notified_level"],
            "last_notified_at": parse_datetime(entry["last_notified_at"]),
            "clear_since": parse_datetime(entry["clear_since"])
            if entry.get("clear_since") else None,
            "resolved_at": parse_datetime(entry["resolved_at"])
            if entry.get("resolved_at") else None}


def mirror(incident: Incident) -> dict:
    """An open row as an entry; its deliveries are marked ``imported`` (not imported twice)
    but still tell ``_catch_up`` and the resolved message who was told."""
    return {"id": incident.pk, "key": incident.key, "level": incident.level,
            "title": incident.title, "message": incident.message, "details": incident.details,
            "opened_at": incident.opened_at.isoformat(),
            "last_notified_at": (incident.last_notified_at or incident.opened_at).isoformat(),
            "notified_level": incident.notified_level or incident.level,
            "clear_since": _stamp(incident.clear_since), "resolved_at": None,
            "deliveries": [{"channel": d.channel, "event": d.event, "attempt": d.attempt,
                            "succeeded": d.succeeded, "permanent": d.permanent_failure,
                            "error": "", "at": d.created_at.isoformat(), "imported": True}
                           for d in incident.deliveries.all()]}


def _catch_up(manager: AlertManager, entry: dict) -> None:
    recent = [d for d in entry["deliveries"] if d["at"] >= entry["last_notified_at"]]
    settled = {d["channel"] for d in recent if d["succeeded"] or d["permanent"]}
    owed = [c for c in manager.targets(entry["notified_level"]) if c.name not in settled]
    if owed:
        _broadcast(manager, entry, recent[-1]["event"] if recent else "opened", owed)


def _broadcast(manager: AlertManager, entry: dict, event: str, channels: list[Channel]) -> None:
    from apps.monitoring.services.alerting import build_message, deliver

    message = build_message(entry["key"], entry["level"], event, entry["title"],
                            entry["message"], parse_datetime(entry["opened_at"]), manager.now,
                            entry.get("details"),
                            parse_datetime(entry["clear_since"])
                            if entry.get("clear_since") else None)
    for channel in channels:
        def record(attempt: int, ok: bool, permanent: bool, error: str,
                   name: str = channel.name) -> None:
            entry["deliveries"].append({
                "channel": name, "event": event, "attempt": attempt, "succeeded": ok,
                "permanent": permanent, "error": error, "at": manager.now.isoformat()})

        ok = deliver(channel, message, record)
        manager.summary.sent.append((entry["key"], event, channel.name, ok))
