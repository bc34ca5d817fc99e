"""Alert incidents: opened once, escalated when the level rises, repeated at most every
ALERT_REPEAT_INTERVAL_SECONDS while open, resolved with a message once the condition has been
clear for ALERT_RESOLVE_AFTER_SECONDS.

Damping against flapping: a figure hovering around a threshold comes and goes from one check to
the next. An open incident whose condition is no longer reported is only "clearing"
(``Incident.clear_since``, in the database, never in process memory): it stays open and nothing
is sent. If the condition returns meanwhile, ``clear_since`` is reset and nothing is sent either
(the repeat interval still applies, a rise in level still escalates); only when it has stayed
clear for the whole delay is it resolved, with one "resolved" message.

Each health alert has a stable key; an ``Incident`` row per key is open at most once (a unique
constraint). State changes are compare-and-set updates, so two overlapping checks never send the
same message twice. Every delivery attempt is an ``AlertDelivery`` row; transient failures are
retried (ALERT_DELIVERY_MAX_ATTEMPTS), a channel that still failed is tried again on the next
check, and one channel failing never stops the others. Warnings go to every channel but the
pager; critical incidents page on-call too.

While the database is down, incidents are kept in ``offline_incidents`` (same rules) and
imported as rows when it is back; while such an incident is still open (typically
``database_down`` clearing) the store keeps a mirror of it, so that the database going down
again continues that incident instead of opening a new one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.monitoring.channels import AlertMessage, Channel, DeliveryError, configured_channels
from apps.monitoring.channels.base import LEVEL_RANK, redact
from apps.monitoring.models import AlertDelivery, Incident
from apps.monitoring.services import offline_incidents
from apps.monitoring.services.alert_content import (
    affected,
    clock,
    human_duration,
    recovered,
    where,
)
from apps.monitoring.services.health_rules import RECOMMENDATIONS

log = logging.getLogger(__name__)

# attempt number, succeeded, permanent failure, error text
Recorder = Callable[[int, bool, bool, str], None]


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
    if event == "resolved":
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
            offline_incidents.process_offline(self, alerts)
            return self.summary
        try:
            mirrored = self._import_offline()
            open_incidents = {i.key: i for i in Incident.objects.filter(resolved_at__isnull=True)}
            for key, alert in alerts.items():
                if key in open_incidents:
                    self._update(open_incidents[key], alert)
                else:
                    self._open(alert)
            for key, incident in open_incidents.items():
                if key not in alerts:
                    self._clear(incident)
            if mirrored:
                self._mirror_offline(mirrored)
        except DatabaseError:
            log.exception("alerting stopped: the database failed during the run")
        return self.summary

    def report(self, alert: dict) -> AlertingSummary:
        """One condition seen by a watcher outside the health check (the workers watching
        the scheduler): open or update its incident, leaving every other incident alone."""
        incident = Incident.objects.filter(key=alert["key"], resolved_at__isnull=True).first()
        if incident is None:
            self._open(alert)
        else:
            self._update(incident, alert)
        return self.summary

    def resolve(self, key: str) -> AlertingSummary:
        """That watcher's condition is over: resolve its open incident at once (it cannot
        flap: it is over when the event it waited for happened)."""
        incident = Incident.objects.filter(key=key, resolved_at__isnull=True).first()
        if incident is not None:
            Incident.objects.filter(pk=incident.pk, clear_since__isnull=True).update(
                clear_since=self.now)
            incident.clear_since = incident.clear_since or self.now
            self._resolve(incident)
        return self.summary

    # --- incident transitions ------------------------------------------------------------

    def _open(self, alert: dict) -> None:
        try:
            with transaction.atomic():
                incident = Incident.objects.create(
                    key=alert["key"], level=alert["level"], title=alert["title"],
                    message=alert["message"], details=_details(alert), opened_at=self.now,
                    last_notified_at=self.now, notified_level=alert["level"],
                )
        except IntegrityError:
            return  # an overlapping check opened it a moment ago and is delivering it
        self._broadcast(incident, "opened", self.targets(incident.level))

    def _update(self, incident: Incident, alert: dict) -> None:
        # clear_since=None: a condition that returns while clearing simply keeps it open.
        changes = {"level": alert["level"], "title": alert["title"],
                   "message": alert["message"], "details": _details(alert), "clear_since": None}
        rises = LEVEL_RANK[alert["level"]] > LEVEL_RANK.get(incident.notified_level, 0)
        last = incident.last_notified_at
        due = last is None or self.now - last >= self.repeat
        if rises or due:
            claimed = Incident.objects.filter(
                pk=incident.pk, notified_level=incident.notified_level,
                last_notified_at=incident.last_notified_at,
            ).update(last_notified_at=self.now,
                     notified_level=alert["level"] if rises else incident.notified_level,
                     **changes)
            if claimed:
                incident.refresh_from_db()
                event = "escalated" if rises else "repeated"
                self._broadcast(incident, event, self.targets(incident.level))
            return
        Incident.objects.filter(pk=incident.pk).update(**changes)
        incident.level = alert["level"]
        self._catch_up(incident)

    def _clear(self, incident: Incident) -> None:
        """Not reported this time: resolve only once clear for ``resolve_after``; until then
        the incident stays open and nothing is sent."""
        if incident.clear_since is None:
            Incident.objects.filter(pk=incident.pk, resolved_at__isnull=True,
                                    clear_since__isnull=True).update(clear_since=self.now)
            incident.clear_since = self.now
        if self.now - incident.clear_since >= self.resolve_after:
            self._resolve(incident)

    def _resolve(self, incident: Incident) -> None:
        claimed = Incident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(
            resolved_at=self.now)
        if not claimed:
            return
        told = set(incident.deliveries.filter(succeeded=True).values_list("channel", flat=True))
        self._broadcast(incident, "resolved", [c for c in self.channels if c.name in told])

    def _catch_up(self, incident: Incident) -> None:
        """Channels that missed the last broadcast (all attempts failed) get it now."""
        since = incident.last_notified_at
        rows = list(incident.deliveries.filter(created_at__gte=since).order_by("-pk").values_list(
            "channel", "event", "succeeded", "permanent_failure"))
        settled = {ch for ch, _, ok, permanent in rows if ok or permanent}
        event = next((ev for _, ev, _, _ in rows), "opened")
        owed = [c for c in self.targets(incident.notified_level) if c.name not in settled]
        if owed:
            self._broadcast(incident, event, owed)

    # --- delivery ------------------------------------------------------------------------

    def targets(self, level: str) -> list[Channel]:
        return [c for c in self.channels if c.wants(level)]

    def _broadcast(self, incident: Incident, event: str, channels: list[Channel]) -> None:
        message = build_message(incident.key, incident.level, event, incident.title,
                                incident.message, incident.opened_at, self.now,
                                incident.details, incident.clear_since)
        for channel in channels:
            ok = deliver(channel, message, self._recorder(incident, channel, event))
            self.summary.sent.append((incident.key, event, channel.name, ok))

    @staticmethod
    def _recorder(incident: Incident, channel: Channel, event: str) -> Recorder:
        def record(attempt: int, ok: bool, permanent: bool, error: str) -> None:
            try:
                AlertDelivery.objects.create(
                    incident=incident, channel=channel.name, event=event, attempt=attempt,
                    succeeded=ok, permanent_failure=permanent, error=error,
                )
            except DatabaseError:
                log.warning("could not record the %s delivery of %s", channel.name, incident.key)

        return record

    def _import_offline(self) -> list[str]:
        """Turn what was sent while the database was down into rows; returns the keys of the
        entries still open, which stay in the store as mirrors (``_mirror_offline``)."""
        stored = offline_incidents.load()
        if not stored:
            return []
        with transaction.atomic():
            for entry in stored:
                incident = self._incident_for(entry)
                AlertDelivery.objects.bulk_create([
                    AlertDelivery(incident=incident, channel=d["channel"], event=d["event"],
                                  attempt=d["attempt"], succeeded=d["succeeded"],
                                  permanent_failure=d["permanent"], error=d["error"],
                                  created_at=parse_datetime(d["at"]))
                    for d in entry["deliveries"] if not d.get("imported")
                ])
        return [e["key"] for e in stored if not e.get("resolved_at")]

    @staticmethod
    def _incident_for(entry: dict) -> Incident:
        state = offline_incidents.incident_state(entry)
        if entry.get("id"):  # a mirror: bring back what changed while the database was down
            Incident.objects.filter(pk=entry["id"], resolved_at__isnull=True).update(**state)
            incident = Incident.objects.filter(pk=entry["id"]).first()
            if incident is not None:
                return incident
        if not entry.get("resolved_at"):
            incident = Incident.objects.filter(key=entry["key"],
                                               resolved_at__isnull=True).first()
            if incident is not None:
                return incident
        return Incident.objects.create(key=entry["key"], details=entry.get("details", {}),
                                       **state)

    @staticmethod
    def _mirror_offline(keys: list[str]) -> None:
        """Keep the still-open incidents that began offline in the store, and only those."""
        rows = list(Incident.objects.filter(key__in=keys, resolved_at__isnull=True)
                    .prefetch_related("deliveries"))
        if rows:
            offline_incidents.save([offline_incidents.mirror(i) for i in rows])
        else:
            offline_incidents.clear()


def _details(alert: dict) -> dict:
    try:
        concerned = affected(alert["key"])
    except DatabaseError:
        concerned = {"total": 0, "items": []}
    return {"value": alert.get("value"), "affects_status": alert.get("affects_status", True),
            "recommendation": RECOMMENDATIONS.get(alert["key"], ""), "affected": concerned,
            "related": alert.get("related", [])}
