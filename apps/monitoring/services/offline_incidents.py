"""Where incidents live while the database is down.

The health check must still alert when the database is unreachable, and still only once: the
incidents (the same state machine as the rows, ``incidents.step``) and what was sent are kept in
the cache (Redis, shared by every host), or in a JSON file under VAR_DIR when the cache is down
too. When the database answers again ``import_into_rows`` turns these entries into ``Incident``
and ``AlertDelivery`` rows, and the alert manager then resolves what has cleared.

Offline, only ``database_down`` and ``cache_down`` can be judged, and ``database_down`` is
reported at every offline check, so it clears once the database answers, as a row. While an
incident that began offline is still open as a row (e.g. ``database_down`` clearing), the store
keeps a *mirror* of it (its id, state and deliveries, marked ``imported``): a database that drops
again within the resolve delay continues that incident (no second "opened") instead of opening
a new one. The mirror is dropped once the row is resolved. Rows opened while the database was up
are not mirrored: during an outage their conditions cannot be judged, they wait (clearing or
not) for the database.

Known limit: if the cache is down while writing and back (empty) while reading, the file is not
consulted and one message may be repeated; both stores failing at once only costs duplicates,
never silence.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils.dateparse import parse_datetime

from apps.monitoring.models import AlertDelivery, Incident
from apps.monitoring.services.health_rules import RECOMMENDATIONS
from apps.monitoring.services.incidents import Delivery, IncidentState, Recorder, Step

log = logging.getLogger(__name__)

CACHE_KEY = "monitoring:offline_incidents"
_TIMES = ("opened_at", "last_notified_at", "clear_since", "resolved_at")


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


class OfflineStore:
    """The incidents of the offline checks, as JSON entries; ``save`` writes them back."""

    def __init__(self, now: datetime):
        self.now = now
        self.entries = load()

    def open_incidents(self, key: str | None = None) -> dict[str, dict]:
        return {e["key"]: e for e in self.entries
                if not e.get("resolved_at") and key in (None, e["key"])}

    def state(self, entry: dict) -> IncidentState:
        return to_state(entry)

    def details(self, entry: dict) -> dict:
        return entry.get("details") or {}

    def commit(self, entry: dict | None, step: Step, alert: dict | None) -> dict:
        if entry is None:
            entry = {"details": {"value": alert["value"],
                                 "recommendation": RECOMMENDATIONS.get(alert["key"], "")},
                     "deliveries": []}
            self.entries.append(entry)
        entry.update(_fields(step.state))
        return entry

    def deliveries(self, entry: dict, since: datetime | None = None) -> list[Delivery]:
        return [Delivery(d["channel"], d["event"], d["succeeded"], d["permanent"])
                for d in reversed(entry["deliveries"])
                if since is None or parse_datetime(d["at"]) >= since]

    def recorder(self, entry: dict, channel: str, event: str) -> Recorder:
        def record(attempt: int, ok: bool, permanent: bool, error: str) -> None:
            entry["deliveries"].append({
                "channel": channel, "event": event, "attempt": attempt, "succeeded": ok,
                "permanent": permanent, "error": error, "at": self.now.isoformat()})

        return record

    def save(self) -> None:
        save(self.entries)


def _fields(state: IncidentState) -> dict:
    fields = asdict(state)
    return {**fields, **{k: fields[k].isoformat() if fields[k] else None for k in _TIMES}}


def to_state(entry: dict) -> IncidentState:
    texts = {k: entry[k] for k in ("key", "level", "title", "message", "notified_level")}
    return IncidentState(**texts, **{k: parse_datetime(entry[k]) if entry.get(k) else None
                                     for k in _TIMES})


def mirror(incident: Incident) -> dict:
    """An open row as an entry; its deliveries are marked ``imported`` (not imported twice)
    but still say who was told (catch-up, and who hears of the resolution)."""
    state = IncidentState(
        key=incident.key, level=incident.level, title=incident.title, message=incident.message,
        opened_at=incident.opened_at,
        last_notified_at=incident.last_notified_at or incident.opened_at,
        notified_level=incident.notified_level or incident.level,
        clear_since=incident.clear_since)
    return {"id": incident.pk, **_fields(state), "details": incident.details,
            "deliveries": [{"channel": d.channel, "event": d.event, "attempt": d.attempt,
                            "succeeded": d.succeeded, "permanent": d.permanent_failure,
                            "error": "", "at": d.created_at.isoformat(), "imported": True}
                           for d in incident.deliveries.all()]}


def import_into_rows() -> list[str]:
    """Turn what was sent while the database was down into rows; returns the keys of the
    entries still open, which stay in the store as mirrors (``keep_mirrors``)."""
    stored = load()
    if not stored:
        return []
    with transaction.atomic():
        for entry in stored:
            incident = _incident_for(entry)
            AlertDelivery.objects.bulk_create([
                AlertDelivery(incident=incident, channel=d["channel"], event=d["event"],
                              attempt=d["attempt"], succeeded=d["succeeded"],
                              permanent_failure=d["permanent"], error=d["error"],
                              created_at=parse_datetime(d["at"]))
                for d in entry["deliveries"] if not d.get("imported")
            ])
    return [e["key"] for e in stored if not e.get("resolved_at")]


def _incident_for(entry: dict) -> Incident:
    state = asdict(to_state(entry))
    del state["key"]
    if entry.get("id"):  # a mirror: bring back what changed while the database was down
        Incident.objects.open().filter(pk=entry["id"]).update(**state)
        incident = Incident.objects.filter(pk=entry["id"]).first()
        if incident is not None:
            return incident
    if not entry.get("resolved_at"):
        incident = Incident.objects.open().filter(key=entry["key"]).first()
        if incident is not None:
            return incident
    return Incident.objects.create(key=entry["key"], details=entry.get("details", {}), **state)


def keep_mirrors(keys: list[str]) -> None:
    """Keep the still-open incidents that began offline in the store, and only those."""
    rows = list(Incident.objects.open().filter(key__in=keys).prefetch_related("deliveries"))
    if rows:
        save([mirror(i) for i in rows])
    else:
        clear()
