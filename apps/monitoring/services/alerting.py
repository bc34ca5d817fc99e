"""Alert incidents: opened once, escalated when the level rises, repeated at most every
ALERT_REPEAT_INTERVAL_SECONDS while open, resolved with a message once the condition has been
clear for ALERT_RESOLVE_AFTER_SECONDS (the rules: ``incidents.step``; clearing is kept in
``Incident.clear_since``, in the database, never in process memory).

Each health alert has a stable key; an ``Incident`` row per key is open at most once (a unique
constraint). State changes are compare-and-set updates, so two overlapping checks never send the
same message twice. Every delivery attempt is an ``AlertDelivery`` row; transient failures are
retried (ALERT_DELIVERY_MAX_ATTEMPTS), a channel that still failed is tried again on the next
check, and one channel failing never stops the others. Warnings go to every channel but the
pager; critical incidents page on-call too.

While the database is down, incidents are kept in ``offline_incidents`` (same rules, another
store) and imported as rows when it is back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from apps.monitoring.alert_channels import AlertMessage, Channel, DeliveryError, configured_channels
from apps.monitoring.alert_channels.base import redact
from apps.monitoring.models import AlertDelivery, Incident, IncidentEvent
from apps.monitoring.services import offline_incidents
from apps.monitoring.services.alert_content import (
    affected,
    clock,
    human_duration,
    recovered,
    where,
)
from apps.monitoring.services.health_rules import RECOMMENDATIONS
from apps.monitoring.services.incidents import Delivery, IncidentState, Recorder, Step, step

log = logging.getLogger(__name__)


@dataclass
class AlertingSummary:
    sent: list[tuple[str, str, str, bool]] = field(default_factory=list)  # key, event, ch, ok

    def lines(self) -> list[str]:
        return [f"{event} {key} -> {channel}: {'ok' if ok else 'FAILED'}"
                for key, event, channel, ok in self.sent]

    @property
    def all_failed(self) -> bool:
        """Something had to be said and no channel said it: nobody knows."""
        return bool(self.sent) and not any(ok for *_, ok in self.sent)

    def as_record(self) -> dict:
        failed = sum(1 for *_, ok in self.sent if not ok)
        return {"deliveries": len(self.sent), "failed": failed, "all_failed": self.all_failed}


def deliver(channel: Channel, message: AlertMessage, record: Recorder) -> bool:
    """Send with retries for transient failures; ``record`` is called for every attempt."""
    attempts = settings.ALERT_DELIVERY_MAX_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            channel.notify(message)
        except DeliveryError as exc:
            record(attempt, False, exc.permanent, str(exc))
            if exc.permanent:
                return False
        except Exception as exc:  # noqa: BLE001 - a broken channel must not stop the others
            # Redacted, and no traceback: the exception's text may carry the channel's URL or
            # key (a Slack webhook URL is a secret).
            error = redact(f"{type(exc).__name__}: {exc}", channel.secrets())[:500]
            log.error("alert channel %s crashed: %s", channel.name, error)
            record(attempt, False, True, error)
            return False
        else:
            record(attempt, True, False, "")
            return True
        if attempt < attempts:
            time.sleep(settings.ALERT_DELIVERY_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return False


def build_message(key: str, level: str, event: str, title: str, text: str,
                  opened_at: datetime, now: datetime, details: dict | None = None,
                  clear_since: datetime | None = None) -> AlertMessage:
    details = {**where(), **(details or {})}
    if event == IncidentEvent.RESOLVED:
        cleared = clear_since or now
        text = (f"{recovered(key, title)} Resolved after "
                f"{human_duration((cleared - opened_at).total_seconds())} "
                f"(opened at {clock(opened_at)} UTC)")
        if cleared < now:  # say why it comes this late: the resolve delay
            text = (f"{text}; clear for the last "
                    f"{human_duration((now - cleared).total_seconds())}")
        text += "."
    else:
        text = _explained(text, details)
    text = f"{text}\nWhere: {details['environment']} on {details['host']}"
    return AlertMessage(key=key, level=level, event=event, title=title, text=text,
                        opened_at=opened_at, at=now, details=details,
                        dashboard_url=f"{settings.WEBHOOK_BASE_URL}/webhooks/monitoring/")


def _explained(text: str, details: dict) -> str:
    """The problem, what to do about it, and the objects concerned (with admin links)."""
    lines = [text]
    if details.get("recommendation"):
        lines.append(f"What to do: {details['recommendation']}")
    concerned = details.get("affected") or {}
    items = concerned.get("items") or []
    if items:
        shown = (f"{len(items)} of {concerned['total']}" if concerned.get("total", 0) > len(items)
                 else str(len(items)))
        lines.append(f"Affected ({shown}):")
        lines += [f"- {i['name']}" + (f" <{i['url']}>" if i.get("url") else "") for i in items]
    return "\n".join(lines)


class IncidentStore(Protocol):
    """Where incidents are kept: ``RowStore`` (the database) or ``offline_incidents``."""

    def open_incidents(self, key: str | None = None) -> dict[str, Any]: ...
    def state(self, handle: Any) -> IncidentState: ...
    def details(self, handle: Any) -> dict: ...
    def commit(self, handle: Any, step: Step, alert: dict | None) -> Any: ...
    def deliveries(self, handle: Any, since: datetime | None = None) -> list[Delivery]: ...
    def recorder(self, handle: Any, channel: str, event: str) -> Recorder: ...


class AlertManager:
    def __init__(self, channels: list[Channel] | None = None, now: datetime | None = None):
        self.channels = configured_channels() if channels is None else channels
        self.now = now or timezone.now()
        self.repeat = timedelta(seconds=settings.ALERT_REPEAT_INTERVAL_SECONDS)
        self.resolve_after = timedelta(seconds=settings.ALERT_RESOLVE_AFTER_SECONDS)
        self.summary = AlertingSummary()

    def process(self, health: dict) -> AlertingSummary:
        alerts = {a["key"]: a for a in health["alerts"]}
        if not health["metrics"]["infrastructure"].get("database_healthy", True):
            # Only what can be judged without the database is in ``alerts`` then
            # (database_down, cache_down); rows opened while it was up wait for it.
            store = offline_incidents.OfflineStore(self.now)
            try:
                self._apply_all(store, alerts)
            finally:
                store.save()
            return self.summary
        try:
            mirrored = offline_incidents.import_into_rows()
            self._apply_all(RowStore(), alerts)
            if mirrored:
                offline_incidents.keep_mirrors(mirrored)
        except DatabaseError:
            log.exception("alerting stopped: the database failed during the run")
        return self.summary

    def report(self, alert: dict) -> AlertingSummary:
        """One condition seen by a watcher outside the health check (the workers watching
        the scheduler): open or update its incident, leaving every other incident alone."""
        store = RowStore()
        self.apply(store, store.open_incidents(alert["key"]).get(alert["key"]), alert)
        return self.summary

    def resolve(self, key: str) -> AlertingSummary:
        """That watcher's condition is over: resolve its open incident at once (it cannot
        flap: it is over when the event it waited for happened)."""
        store = RowStore()
        incident = store.open_incidents(key).get(key)
        if incident is not None:
            self.apply(store, incident, None, resolve_after=timedelta(0))
        return self.summary

    def _apply_all(self, store: IncidentStore, alerts: dict[str, dict]) -> None:
        open_incidents = store.open_incidents()
        for key, alert in alerts.items():
            self.apply(store, open_incidents.get(key), alert)
        for key, handle in open_incidents.items():
            if key not in alerts:
                self.apply(store, handle, None)

    def apply(self, store: IncidentStore, handle: Any, alert: dict | None,
              resolve_after: timedelta | None = None) -> None:
        """One transition of one incident: decide, store (compare-and-set), then tell."""
        state = None if handle is None else store.state(handle)
        nxt = step(state, alert, self.now, repeat=self.repeat,
                   resolve_after=self.resolve_after if resolve_after is None else resolve_after)
        if nxt is None:
            return
        handle = store.commit(handle, nxt, alert)
        if handle is None or (nxt.event is None and not nxt.catch_up):
            return  # claimed by an overlapping check, or nothing to say
        event, channels = nxt.event, self.targets(nxt.state.level)
        if nxt.catch_up:
            # Channels that missed the last broadcast (all attempts failed) get it now.
            recent = store.deliveries(handle, since=nxt.state.last_notified_at)
            settled = {d.channel for d in recent if d.succeeded or d.permanent}
            event = recent[0].event if recent else IncidentEvent.OPENED
            channels = [c for c in self.targets(nxt.state.notified_level)
                        if c.name not in settled]
        elif event == IncidentEvent.RESOLVED:
            told = {d.channel for d in store.deliveries(handle) if d.succeeded}
            channels = [c for c in self.channels if c.name in told]
        if channels:
            self._broadcast(store, handle, nxt.state, event, channels)

    def targets(self, level: str) -> list[Channel]:
        return [c for c in self.channels if c.wants(level)]

    def _broadcast(self, store: IncidentStore, handle: Any, state: IncidentState, event: str,
                   channels: list[Channel]) -> None:
        message = build_message(state.key, state.level, event, state.title, state.message,
                                state.opened_at, self.now, store.details(handle),
                                state.clear_since)
        for channel in channels:
            ok = deliver(channel, message, store.recorder(handle, channel.name, event))
            self.summary.sent.append((state.key, event, channel.name, ok))


class RowStore:
    """Incidents as ``Incident`` rows; every change that sends something is claimed with a
    compare-and-set update, so two overlapping checks never send the same message twice."""

    def open_incidents(self, key: str | None = None) -> dict[str, Incident]:
        rows = Incident.objects.open()
        return {i.key: i for i in (rows if key is None else rows.filter(key=key))}

    def state(self, incident: Incident) -> IncidentState:
        return IncidentState(
            key=incident.key, level=incident.level, title=incident.title,
            message=incident.message, opened_at=incident.opened_at,
            notified_level=incident.notified_level, last_notified_at=incident.last_notified_at,
            clear_since=incident.clear_since, resolved_at=incident.resolved_at)

    def details(self, incident: Incident) -> dict:
        return incident.details

    def commit(self, incident: Incident | None, step: Step,
               alert: dict | None) -> Incident | None:
        new = step.state
        if incident is None:
            try:
                with transaction.atomic():
                    return Incident.objects.create(details=_details(alert), **vars(new))
            except IntegrityError:
                return None  # an overlapping check opened it a moment ago and is delivering it
        rows = Incident.objects.filter(pk=incident.pk)
        if alert is None:  # clearing: stamp it once; resolved: claim the resolution
            if incident.clear_since is None:
                rows.open().filter(clear_since__isnull=True).update(clear_since=new.clear_since)
                incident.clear_since = new.clear_since
            if step.event is None:
                return incident
            return incident if rows.open().update(resolved_at=new.resolved_at) else None
        changes = {f: getattr(new, f) for f in ("level", "title", "message", "clear_since")}
        if not step.catch_up:  # escalated or repeated: claim the broadcast
            changes |= {"notified_level": new.notified_level,
                        "last_notified_at": new.last_notified_at,
                        # Looked up only for a message being sent (a catch-up resends the
                        # details of the broadcast it missed): no queries per open incident
                        # on every check.
                        "details": _details(alert)}
            rows = rows.filter(notified_level=incident.notified_level,
                               last_notified_at=incident.last_notified_at)
        if not rows.update(**changes):
            return None
        for name, value in changes.items():
            setattr(incident, name, value)
        return incident

    def deliveries(self, incident: Incident, since: datetime | None = None) -> list[Delivery]:
        rows = incident.deliveries.all() if since is None else incident.deliveries.filter(
            created_at__gte=since)
        return [Delivery(*d) for d in rows.order_by("-pk").values_list(
            "channel", "event", "succeeded", "permanent_failure")]

    def recorder(self, incident: Incident, channel: str, event: str) -> Recorder:
        def record(attempt: int, ok: bool, permanent: bool, error: str) -> None:
            try:
                AlertDelivery.objects.create(
                    incident=incident, channel=channel, event=event, attempt=attempt,
                    succeeded=ok, permanent_failure=permanent, error=error,
                )
            except DatabaseError:
                log.warning("could not record the %s delivery of %s", channel, incident.key)

        return record


def _details(alert: dict) -> dict:
    try:
        concerned = affected(alert["key"])
    except DatabaseError:
        concerned = {"total": 0, "items": []}
    return {"value": alert.get("value"), "affects_status": alert.get("affects_status", True),
            "recommendation": RECOMMENDATIONS.get(alert["key"], ""), "affected": concerned,
            "related": alert.get("related", [])}
