"""Where incidents live while the database is down.

The health check must still alert when the database is unreachable, and still only once: what
was sent is kept in the cache (Redis, shared by every host), or in a JSON file under VAR_DIR when
the cache is down too. When the database answers again the alert manager turns these records
into ``Incident`` and ``AlertDelivery`` rows and then resolves what has cleared.

Known limit: if the cache is down while writing and back (empty) while reading, the file is not
consulted and one message may be repeated; both stores failing at once only costs duplicates,
never silence.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.utils.dateparse import parse_datetime

from apps.monitoring.channels.base import LEVEL_RANK

if TYPE_CHECKING:
    from apps.monitoring.channels import Channel
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
                         "message": alert["message"], "details": {"value": alert["value"]},
                         "opened_at": stamp, "last_notified_at": stamp,
                         "notified_level": alert["level"], "resolved_at": None,
                         "deliveries": []}
                entries.append(entry)
                _broadcast(manager, entry, "opened", manager.targets(entry["level"]))
                continue
            entry.update(level=alert["level"], title=alert["title"], message=alert["message"])
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
                entry["resolved_at"] = stamp
                told = {d["channel"] for d in entry["deliveries"] if d["succeeded"]}
                _broadcast(manager, entry, "resolved",
                           [c for c in manager.channels if c.name in told])
    finally:
        save(entries)


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
                            entry.get("details"))
    for channel in channels:
        def record(attempt: int, ok: bool, permanent: bool, error: str,
                   name: str = channel.name) -> None:
            entry["deliveries"].append({
                "channel": name, "event": event, "attempt": attempt, "succeeded": ok,
                "permanent": permanent, "error": error, "at": manager.now.isoformat()})

        ok = deliver(channel, message, record)
        manager.summary.sent.append((entry["key"], event, channel.name, ok))
