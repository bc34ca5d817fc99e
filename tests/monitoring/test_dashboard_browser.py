"""The dashboard page in headless Chromium: it loads for staff, logs nothing to the console
(the page's Content-Security-Policy turns any external load into a console error), and its
charts are drawn from data.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skipped only when it is absent.
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone

from apps.monitoring.models import HealthSnapshot, Incident
from tests.support.browser import CHROMIUM_MARKS, chromium, signed_in
from tests.support.factories import (
    beat,
    make_api_call,
    make_calendar,
    make_notifications,
    make_subscriptions,
)

pytestmark = CHROMIUM_MARKS
PAGE = "/webhooks/monitoring/"


def a_day_of_activity() -> None:
    now = timezone.now()
    beat()
    subs = [make_subscriptions(make_calendar(provider, name=f"{provider} calendar {i}"), 1)[0]
            for i, provider in enumerate(["google", "google", "microsoft"])]
    make_subscriptions(make_calendar(name="Expiring soon"), 1,
                       expires_at=now + timedelta(hours=5))
    for hours_ago in range(24):
        at = now - timedelta(hours=hours_ago)
        make_notifications(subs[hours_ago % 3], 6 + hours_ago % 5, received_at=at,
                           processing_time_ms=40 + 10 * hours_ago)
        make_notifications(subs[0], hours_ago % 3, status="failed", received_at=at)
        make_api_call(at, duration_ms=80 + hours_ago)
        HealthSnapshot.objects.create(status="healthy", active_subscriptions=3 + hours_ago % 2,
                                      total_subscriptions=4, created_at=at)
    Incident.objects.create(key="accounts_reauth_required", level="warning",
                            title="1 accounts need re-authorization")


def test_the_page_loads_for_staff_without_console_errors_and_its_charts_have_data(
        live_server, staff_user, tmp_path):
    a_day_of_activity()
    url = signed_in(live_server, staff_user, PAGE)

    run = chromium(tmp_path / "profile", url, "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    assert "Calendar Sync · webhook monitoring" in dom  # the page, not the login form
    assert re.search(r'<span class="badge (healthy|degraded|critical)" id="status">', dom)
    points = dict(re.findall(r'data-series="(\w+)" data-points="(\d+)"', dom))
    assert set(points) == {"notifications", "success_rate", "processing_time",
                           "active_subscriptions", "api_calls", "api_response_time",
                           "burn_availability", "burn_freshness", "change_lag_p95"}
    daily = {"burn_availability", "burn_freshness", "change_lag_p95"}  # SLO section
    assert all(int(n) >= 23 for k, n in points.items() if k not in daily), points
    assert int(points["burn_freshness"]) >= 1  # today's (and perhaps yesterday's) burn
    assert dom.count("<polyline") >= 4 and dom.count('<rect class="bar"') >= 47
    assert "1 accounts need re-authorization" in dom
    assert "Expiring soon" in dom and "microsoft calendar 2" in dom

    shot = tmp_path / "dashboard.png"
    run = chromium(tmp_path / "profile", url, f"--screenshot={shot}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 20_000
