"""Service level objectives from the SLI rollups: availability and freshness, their SLI and
burn rate per window, the error budget left, and the multiwindow, multi-burn-rate alerts.

Burn rate = error rate / error budget (1 - objective): 1 spends the budget exactly over the
budget window, 14.4 spends 2 % of a 30-day budget in an hour. A rule fires when both its long
and its short window burn faster than its threshold: the long window says it matters, the short
one that it is still happening (so the alert resolves soon after the problem does).

Reads: minute rows for windows up to 6 h (at most 360 per provider), hour rows for the longer
ones (at most 24 per provider and day). A change counts when its notification finishes (a
notification still waiting is the backlog rule's and the worker rule's business).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from apps.monitoring.models import Level, SliRollup
from calendar_sync import sli

SHORT_WINDOWS = {"5m": 5, "30m": 30, "1h": 60, "6h": 360}  # minutes, from minute rows
LONG_WINDOWS = {"3d": 72}  # hours, from hour rows (plus the budget window)
# (good field, total fields) per SLI.
SLIS = {
    "availability": ("requests_ok", ("requests_ok", "requests_failed")),
    "freshness": ("changes_fresh", ("changes",)),
}


def budget_window_label() -> str:
    return f"{settings.SLO_BUDGET_WINDOW_DAYS}d"


def objectives() -> dict[str, float]:
    return {"availability": settings.SLO_AVAILABILITY_OBJECTIVE,
            "freshness": settings.SLO_FRESHNESS_OBJECTIVE}


@dataclass
class Tally:
    good: int = 0
    total: int = 0

    def sli(self) -> float | None:
        return self.good / self.total if self.total else None


def window_tallies(now: datetime | None = None,
                   windows: tuple[str, ...] | None = None) -> dict[str, dict[str, Tally]]:
    """{sli name: {window label: Tally}} for the requested windows (all by default)."""
    now = now or timezone.now()
    long_windows = {**LONG_WINDOWS, budget_window_label(): settings.SLO_BUDGET_WINDOW_DAYS * 24}
    wanted = windows or (*SHORT_WINDOWS, *long_windows)
    fields = ("requests_ok", "requests_failed", "changes", "changes_fresh")
    tallies: dict[str, dict[str, Tally]] = {name: {} for name in SLIS}
    for resolution, spans, unit, current in (
        (SliRollup.Resolution.MINUTE, SHORT_WINDOWS, timedelta(minutes=1), sli.minute_of(now)),
        (SliRollup.Resolution.HOUR, long_windows, timedelta(hours=1), sli.hour_of(now)),
    ):
        since = {label: current - unit * (n - 1) for label, n in spans.items() if label in wanted}
        if not since:
            continue
        # The rows themselves (a few thousand at most), summed here: cheaper than asking the
        # database for one filtered sum per window and field.
        sums = {label: dict.fromkeys(fields, 0) for label in since}
        for bucket, *values in SliRollup.objects.filter(
            resolution=resolution, bucket__gte=min(since.values()), bucket__lte=current,
        ).values_list("bucket", *fields):
            for label, start in since.items():
                if bucket >= start:
                    for name, value in zip(fields, values, strict=True):
                        sums[label][name] += value
        for name, (good, totals) in SLIS.items():
            for label in since:
                tallies[name][label] = Tally(good=sums[label][good],
                                             total=sum(sums[label][f] for f in totals))
    return tallies


def burn_rate(tally: Tally, objective: float) -> float | None:
    value = tally.sli()
    if value is None:
        return None
    return (1.0 - value) / (1.0 - objective) if objective < 1 else None


def slo_document(now: datetime | None = None) -> dict:
    """The health document's ``slo`` block (the cache's request counts are moved into the
    rollups first, so a 503 answered a minute ago is already in it)."""
    now = now or timezone.now()
    sli.flush_requests(now)
    tallies = window_tallies(now)
    budget = budget_window_label()
    document = {}
    for name, objective in objectives().items():
        windows = tallies[name]
        burns = {label: _round(burn_rate(t, objective)) for label, t in windows.items()}
        document[name] = {
            "objective": objective,
            "sli": {label: _round(t.sli(), 6) for label, t in windows.items()},
            "burn_rate": burns,
            "error_budget_remaining": (None if burns[budget] is None
                                       else round(1.0 - burns[budget], 4)),
            "events": {label: {"good": t.good, "total": t.total} for label, t in windows.items()},
        }
    return document


def unknown_document() -> dict:
    """The ``slo`` block when the rollups cannot be read (the database is down): same shape,
    every figure null."""
    labels = [*SHORT_WINDOWS, *LONG_WINDOWS, budget_window_label()]
    return {name: {"objective": objective, "sli": dict.fromkeys(labels),
                   "burn_rate": dict.fromkeys(labels), "error_budget_remaining": None}
            for name, objective in objectives().items()}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def burn_alerts(slo: dict) -> list[dict]:
    """One alert per SLO whose burn-rate rule fires (the most severe rule decides the level);
    keys ``slo_<name>`` so the incident escalates and resolves as one."""
    alerts = []
    for name, block in slo.items():
        if not block:
            continue
        fired = [rule for rule in settings.SLO_BURN_RULES if _fires(block["burn_rate"], rule)]
        if not fired:
            continue
        rule = min(fired, key=lambda r: r["level"] != Level.CRITICAL)
        burns = {label: round(value, 1) for label, value in block["burn_rate"].items()
                 if value is not None}
        remaining = block["error_budget_remaining"]
        left = "unknown" if remaining is None else f"{remaining:.1%}"
        alerts.append({
            "key": f"slo_{name}", "level": rule["level"],
            "title": f"{name.capitalize()} SLO burning {burns[rule['long']]:g}x "
                     f"over {rule['long']}",
            "message": (f"{name.capitalize()} error budget burn rate: {burns[rule['long']]:g} "
                        f"over {rule['long']} and {burns[rule['short']]:g} over "
                        f"{rule['short']} (threshold {rule['threshold']:g}); objective "
                        f"{block['objective']:.2%}; {left} of the budget left."),
            "value": burns[rule["long"]],
            "affects_status": True,
        })
    return alerts


def _fires(burns: dict, rule: dict) -> bool:
    long, short = burns.get(rule["long"]), burns.get(rule["short"])
    return (long is not None and short is not None
            and long > rule["threshold"] and short > rule["threshold"])


def fast_burn_reason(now: datetime | None = None) -> str | None:
    """The paging rules on the short windows only (minute rows): for the every-minute urgent
    check, so that a total outage pages within minutes rather than at the next full check."""
    now = now or timezone.now()
    sli.flush_requests(now)
    labels = tuple(SHORT_WINDOWS)
    tallies = window_tallies(now, labels)
    for name, objective in objectives().items():
        burns = {label: burn_rate(t, objective) for label, t in tallies[name].items()}
        for rule in settings.SLO_BURN_RULES:
            if rule["level"] == Level.CRITICAL and rule["long"] in labels and _fires(burns, rule):
                return f"{name} SLO burning {burns[rule['long']]:.1f}x over {rule['long']}"
    return None


def daily_burn(now: datetime | None = None) -> dict:
    """Each SLO's burn rate per day over the budget window, oldest first (None: no traffic
    that day): the dashboard's burn chart. Reads the window's hour rows."""
    now = now or timezone.now()
    days = settings.SLO_BUDGET_WINDOW_DAYS
    today = sli.hour_of(now).replace(hour=0)
    slots = [today - timedelta(days=d) for d in range(days - 1, -1, -1)]
    fields = {f for good, totals in SLIS.values() for f in (good, *totals)}
    per_day: dict[datetime, dict[str, int]] = {}
    for row in (SliRollup.objects.filter(resolution=SliRollup.Resolution.HOUR,
                                         bucket__gte=slots[0])
                .values("bucket", *fields)):
        day = per_day.setdefault(row["bucket"].replace(hour=0), dict.fromkeys(fields, 0))
        for f in fields:
            day[f] += row[f]
    burns: dict[str, list[float | None]] = {}
    for name, objective in objectives().items():
        good, totals = SLIS[name]
        burns[name] = [
            _round(burn_rate(Tally(per_day[d][good], sum(per_day[d][f] for f in totals)),
                             objective)) if d in per_day else None for d in slots]
    return {"days": [d.isoformat() for d in slots], **burns}
