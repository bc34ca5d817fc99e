"""The dashboard for 3 a.m.: what is broken (with admin links), who must act, the switches,
incidents of the week, quota, fallback polling, undelivered alerts; in Chromium too."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.monitoring.models import AutoFallback, HealthSnapshot, Incident, ProviderApiCall
from apps.webhooks.services.subscriptions.flags import set_runtime_switch
from tests.support.browser import chromium, in_chromium, signed_in
from tests.support.factories import beat, make_calendar, make_subscriptions

PAGE = "/webhooks/monitoring/"


def a_bad_night() -> dict:
    now = timezone.now()
    beat()
    broken = make_calendar(name="Board Room")
    failed = make_subscriptions(broken, 1, status="failed", failure_count=3,
                                last_error="HTTP 403 forbidden by the domain admin")[0]
    suspended = make_subscriptions(make_calendar(name="Sales"), 1, status="suspended",
                                   failure_count=10, last_error="HTTP 500 backend error")[0]
    make_subscriptions(make_calendar(name="Quiet and fine"), 1)
    revoked = make_calendar(name="Revoked one", account_status="reauth_required")
    polled = make_calendar(name="Polled by hand", fallback_polling_enabled=True)
    auto = make_calendar(name="Polled by the monitor", fallback_polling_enabled=True)
    AutoFallback.objects.create(calendar=auto, reason="subscription suspended")
    Incident.objects.create(key="worker_stale", level="critical", title="No live worker now",
                            message="The last worker stopped at 02:55 UTC")
    Incident.objects.create(key="cache_down", level="warning", title="Cache was down Tuesday",
                            opened_at=now - timedelta(days=3),
                            resolved_at=now - timedelta(days=3) + timedelta(minutes=20))
    Incident.objects.create(key="disk_space_low", level="warning", title="Ancient disk issue",
                            opened_at=now - timedelta(days=20),
                            resolved_at=now - timedelta(days=19))
    ProviderApiCall.objects.bulk_create([ProviderApiCall(provider="microsoft", operation="x",
                                                         duration_ms=5) for _ in range(30)])
    HealthSnapshot.objects.create(status="critical", document={
        "alert_delivery": {"deliveries": 3, "failed": 3, "all_failed": True}})
    set_runtime_switch(False, by="cli:bob")
    return {"failed": failed, "suspended": suspended, "polled": polled,
            "revoked": revoked.calendar_account}


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.mark.django_db
def test_the_page_lists_what_is_broken_with_admin_links(staff_client, settings):
    night = a_bad_night()
    html = staff_client.get(PAGE).content.decode()
    failing = html[html.index('id="failing-subscriptions"'):]
    failing = failing[:failing.index("</section>")]
    assert "Failed and suspended subscriptions (2)" in failing
    assert "HTTP 403 forbidden by the domain admin" in failing and "Board Room" in failing
    assert "suspended" in failing and "Quiet and fine" not in failing
    assert f'href="/admin/webhooks/webhooksubscription/{night["failed"].pk}/change/"' in failing
    assert (f'href="/admin/calendars/calendaraccount/{night["revoked"].pk}/change/"' in html)
    assert "Accounts needing re-authorization (1)" in html
    assert "No live worker now" in html and "Cache was down Tuesday" in html
    assert "Ancient disk issue" not in html  # older than the week
    quota = html[html.index('id="quota"'):]
    assert re.search(r"<td>microsoft</td><td class=\"num\">30</td><td class=\"num\">60000</td>"
                     r"<td class=\"num\">0\.1 %</td>", quota[:quota.index("</section>")])
    fallback = html[html.index('id="fallback-calendars"'):]
    fallback = fallback[:fallback.index("</section>")]
    assert "Calendars on fallback polling (2)" in fallback
    assert "set by an operator" in fallback
    assert "health monitor: subscription suspended" in fallback
    control = html[html.index('id="control"'):]
    assert re.search(r'id="kill-switch">off · by cli:bob', control)
    assert "Alerts not delivered." in control


@in_chromium
def test_the_3am_sections_render_in_chromium_without_console_errors(live_server, staff_user,
                                                                   tmp_path):
    night = a_bad_night()
    url = signed_in(live_server, staff_user, PAGE)
    run = chromium(tmp_path / "profile", url, "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    assert [line for line in run.stderr.splitlines() if ":CONSOLE" in line] == []
    dom = run.stdout
    for section in ("control", "failing-subscriptions", "reauth-accounts", "quota",
                    "fallback-calendars", "resolved-incidents"):
        assert f'id="{section}"' in dom, section
    assert "HTTP 500 backend error" in dom and "Polled by hand" in dom
    reauth = dom[dom.index('id="reauth-accounts"'):]
    assert "Accounts needing re-authorization (1)" in reauth
    assert night["revoked"].email in reauth[:reauth.index("</section>")]
