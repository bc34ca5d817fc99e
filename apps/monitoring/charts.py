"""Geometry for the dashboard's inline SVG charts (rendered server-side: no JavaScript, no CDN).

A chart is a dict the template draws: line segments (gaps where an hour has no data), point
markers or bars with a tooltip each, and axis ticks.
"""

from __future__ import annotations

import math
from datetime import datetime

WIDTH, HEIGHT = 520, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 12, 24
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _fmt(value: float) -> str:
    return f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"


def build_chart(key: str, title: str, hours: list[str], values: list[float | None],
                unit: str = "", kind: str = "line", y_max: float | None = None,
                label_format: str = "%H:00", tick_every: int = 6) -> dict:
    n = len(values)
    present = [v for v in values if v is not None]
    top = y_max if y_max is not None else _nice_max(max(present, default=0))
    slot = PLOT_W / max(n, 1)
    labels = [datetime.fromisoformat(h).strftime(label_format) for h in hours]

    def x_at(i: int) -> float:
        return round(LEFT + slot * (i + 0.5), 1)

    def y_at(v: float) -> float:
        return round(TOP + PLOT_H * (1 - min(v, top) / top), 1)

    points, segments, bars, current = [], [], [], []
    for i, value in enumerate(values):
        if value is None:
            if current:
                segments.append(" ".join(current))
            current = []
            continue
        tip = f"{labels[i]} UTC: {_fmt(value)}{unit}"
        if kind == "bar":
            y = y_at(value)
            bars.append({"x": round(x_at(i) - slot * 0.35, 1), "y": y, "w": round(slot * 0.7, 1),
                         "h": round(TOP + PLOT_H - y, 1), "tip": tip, "value": value})
        else:
            points.append({"x": x_at(i), "y": y_at(value), "tip": tip, "value": value})
            current.append(f"{x_at(i)},{y_at(value)}")
    if current:
        segments.append(" ".join(current))
    return {
        "key": key, "title": title, "unit": unit, "kind": kind,
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT,
        "top": TOP, "bottom": TOP + PLOT_H, "mid_x": LEFT + PLOT_W // 2,
        "mid_y": TOP + PLOT_H // 2,
        "points": points, "segments": segments, "bars": bars,
        "count": len(present),
        "latest": present[-1] if present else None,
        "y_ticks": [{"y": y_at(top * f), "label": _fmt(round(top * f, 2))}
                    for f in (0, 0.5, 1)],
        "x_ticks": [{"x": x_at(i), "label": labels[i]} for i in range(0, n, tick_every)],
    }


def dashboard_charts(trends: dict) -> list[dict]:
    hours = trends["hours"]
    return [
        build_chart("notifications", "Notifications received per hour", hours,
                    trends["notifications"], kind="bar"),
        build_chart("success_rate", "Processing success rate", hours, trends["success_rate"],
                    unit="%", y_max=100.0),
        build_chart("processing_time", "Average processing time", hours,
                    trends["average_processing_time_ms"], unit=" ms"),
        build_chart("active_subscriptions", "Active push subscriptions", hours,
                    trends["active_subscriptions"]),
        build_chart("api_calls", "Provider API calls per hour", hours, trends["api_calls"],
                    kind="bar"),
        build_chart("api_response_time", "Average provider API response time", hours,
                    trends["average_api_response_time_ms"], unit=" ms"),
    ]


def burn_chart(burns: dict) -> list[dict]:
    """The SLOs' daily burn rates over the budget window (1 = spending exactly the budget)."""
    return [build_chart(f"burn_{name}", f"{name.capitalize()} budget burn rate per day",
                        burns["days"], burns[name], unit="x", kind="bar",
                        label_format="%m-%d", tick_every=7)
            for name in ("availability", "freshness")]
