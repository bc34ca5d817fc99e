"""What the dashboard page's SLO section draws: one card per SLO (SLI and burn rate per
window, budget left), the daily burn charts and the 7-day status history strip."""

from __future__ import annotations

from datetime import datetime

from apps.monitoring.charts import build_chart, burn_chart
from apps.monitoring.services import rollups, slo

TITLES = {"availability": "Availability (requests acknowledged)",
          "freshness": "Freshness (changes visible within the limit)"}
HISTORY_CELL, HISTORY_GAP = 6, 1
# Below this share of the budget left, the figure is shown as a warning.
BUDGET_LOW = 0.25


def _pct(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(100 * value, digits)


def slo_cards(block: dict) -> list[dict]:
    cards = []
    for name, objective in slo.objectives().items():
        data = block.get(name) or {}
        remaining = data.get("error_budget_remaining")
        cards.append({
            "name": name, "title": TITLES[name], "objective_pct": _pct(objective),
            "block": bool(data), "budget_window": slo.budget_window_label(),
            "budget_pct": _pct(remaining, 1), "budget_low": remaining is not None
            and remaining < BUDGET_LOW,
            "windows": [{"label": label, "sli_pct": _pct(value),
                         "burn": data["burn_rate"][label]}
                        for label, value in data.get("sli", {}).items()],
        })
    return cards


def status_strip(now: datetime | None = None) -> dict:
    hours = rollups.status_history(now)
    step = HISTORY_CELL + HISTORY_GAP
    return {"width": len(hours) * step, "cell": HISTORY_CELL,
            "cells": [{**h, "x": i * step} for i, h in enumerate(hours)]}


def slo_context(health: dict, trends: dict) -> dict:
    """The page context of the SLO section (reads the budget window's hour rows, the 7 days'
    status hours; ``trends`` are the dashboard's 24 h series, already read)."""
    burns = burn_chart(slo.daily_burn())
    for chart in burns:
        chart["empty_text"] = "no traffic in the budget window"
    lag = build_chart("change_lag_p95", "Change lag p95: provider's last change to local commit",
                      trends["hours"], trends["change_lag_p95_seconds"], unit=" s")
    return {"slo_cards": slo_cards(health.get("slo") or {}), "burn_charts": [*burns, lag],
            "status_history": status_strip()}
