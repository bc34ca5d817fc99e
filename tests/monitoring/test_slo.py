"""Availability and freshness SLOs: burn-rate alerts from recorded traffic at simulated times,
the health document's ``slo`` block, the counts behind them (receivers' answers, even while the
database is down; finished notifications) and where people see them (/metrics, the page)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from apps.monitoring.models import Incident, SliRollup
from apps.monitoring.services import slo
from apps.monitoring.services.health_document import get_system_health
from apps.webhooks.models import WebhookNotification, WebhookSubscription
from apps.webhooks.services.queue import notification_rows
from calendar_sync import sli
from tests.support.commands import command
from tests.support.factories import beat, connect_account, make_calendar, make_subscriptions
from tests.support.outages import database_unreachable
from tests.support.sandbox import Writer, seen

pytestmark = pytest.mark.django_db
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
WINDOWS = {"5m", "30m", "1h", "6h", "3d", "28d"}


def traffic(start: datetime, end: datetime, step: timedelta, *, requests: int = 0,
            failed_requests: int = 0, changes: int = 0, stale_changes: int = 0) -> None:
    """Record traffic every ``step`` from ``start`` to ``end`` as the receivers and the worker
    record it (additive rollup writes at each moment)."""
    at = start
    while at < end:
        sli.record("google", at, requests_ok=requests - failed_requests,
                   requests_failed=failed_requests, changes=changes,
                   changes_fresh=changes - stale_changes)
        at += step


def health_check(send_alerts: bool = True) -> None:
    command("webhook_health_check", "--if-due", *(["--send-alerts"] if send_alerts else []))


def slo_incidents() -> dict[str, str]:
    return dict(Incident.objects.filter(key__startswith="slo_", resolved_at__isnull=True)
                .values_list("key", "level"))


def test_without_traffic_every_window_is_null_and_nothing_alerts(live_worker):
    document = get_system_health()
    assert set(document["slo"]) == {"availability", "freshness"}
    for name, objective in (("availability", 0.999), ("freshness", 0.99)):
        block = document["slo"][name]
        assert block["objective"] == objective
        assert block["sli"] == dict.fromkeys(WINDOWS)
        assert block["burn_rate"] == dict.fromkeys(WINDOWS)
        assert block["error_budget_remaining"] is None
    assert document["status"] == "healthy"


def test_with_the_database_down_the_slo_block_keeps_its_shape_with_null_figures(live_worker):
    with database_unreachable():
        document = get_system_health()
    assert document["slo"]["availability"]["objective"] == 0.999
    assert document["slo"]["freshness"]["burn_rate"] == dict.fromkeys(WINDOWS)
    assert [a["key"] for a in document["alerts"]] == ["database_down"]


def test_a_total_outage_pages_everywhere_within_five_minutes(all_channels, mailoutbox, calendar):
    make_subscriptions(calendar, 1)
    with time_machine.travel(T0 - timedelta(days=1), tick=False) as clock:
        traffic(T0 - timedelta(days=1), T0, timedelta(minutes=5), requests=500)
        clock.move_to(T0)
        beat()
        health_check()
        assert slo_incidents() == {}
        paged_after = None
        for minute in range(1, 11):  # ten minutes: a page after the fifth fails the test
            for _ in range(50):  # every request answered 5xx, counted as the receivers do
                sli.count_request("google", 503)
            clock.move_to(T0 + timedelta(minutes=minute))
            beat()
            health_check()  # cron, every minute
            if slo_incidents() and paged_after is None:
                paged_after = minute
    assert slo_incidents() == {"slo_availability": "critical"}
    assert paged_after is not None and paged_after <= 5
    got = seen(all_channels.url, mailoutbox)
    assert ("slo_availability", "trigger") in got["pagerduty"]
    assert ("slo_availability", "opened") in got["slack"]


def test_two_percent_of_notifications_failing_for_a_day_warns_without_paging(live_worker):
    with time_machine.travel(T0, tick=False):
        traffic(T0 - timedelta(days=1), T0, timedelta(minutes=5), requests=100, changes=100,
                stale_changes=2)
        health = get_system_health()
        health_check()
    freshness = health["slo"]["freshness"]
    assert freshness["sli"]["6h"] == pytest.approx(0.98)
    assert freshness["burn_rate"]["3d"] == pytest.approx(2.0)
    assert slo_incidents() == {"slo_freshness": "warning"}
    assert health["status"] == "degraded"
    # The 28-day budget: a day at twice the allowed pace spends it... in a day's worth of
    # traffic, which is all there is: more than the whole budget.
    assert freshness["error_budget_remaining"] == pytest.approx(-1.0)


def test_a_trickle_of_failures_pages_nobody(live_worker):
    """0.05 % of requests and changes failing for three days: within both objectives."""
    with time_machine.travel(T0, tick=False):
        traffic(T0 - timedelta(days=3), T0, timedelta(minutes=10), requests=2000,
                failed_requests=1, changes=2000, stale_changes=1)
        health = get_system_health()
        health_check()
    assert health["slo"]["availability"]["burn_rate"]["1h"] == pytest.approx(0.5)
    assert health["slo"]["availability"]["error_budget_remaining"] == pytest.approx(0.5)
    assert slo_incidents() == {}
    assert health["status"] == "healthy"


def test_fast_burn_resolves_to_the_slow_burn_warning_once_the_outage_ends(live_worker):
    with time_machine.travel(T0, tick=False) as clock:
        traffic(T0 - timedelta(hours=6), T0, timedelta(minutes=1), requests=100)
        traffic(T0, T0 + timedelta(minutes=10), timedelta(minutes=1), requests=100,
                failed_requests=100)
        clock.move_to(T0 + timedelta(minutes=10))
        levels = {a["key"]: a["level"] for a in get_system_health()["alerts"]}
        assert levels["slo_availability"] == "critical"
        traffic(T0 + timedelta(minutes=10), T0 + timedelta(hours=2), timedelta(minutes=1),
                requests=100)
        clock.move_to(T0 + timedelta(hours=2))
        levels = {a["key"]: a["level"] for a in get_system_health()["alerts"]}
    # 1 h and 5 min windows are clean again; 6 h and 3 d still show the spent budget.
    assert levels["slo_availability"] == "warning"


def test_503s_answered_while_the_database_is_down_are_counted_and_flushed_later(client,
                                                                                google_calendar):
    subscription = WebhookSubscription(calendar=google_calendar, provider="google",
                                       channel_id="chan-slo", resource_id="res-1",
                                       status="active")
    token = subscription.issue_token()
    subscription.save()
    headers = {"X-Goog-Channel-ID": "chan-slo", "X-Goog-Channel-Token": token,
               "X-Goog-Resource-ID": "res-1", "X-Goog-Resource-State": "exists",
               "X-Goog-Message-Number": "1"}

    def post(n: int):
        return client.post("/webhooks/google/", data=b"", content_type="text/plain",
                           headers={**headers, "X-Goog-Message-Number": str(n)})

    with database_unreachable():
        assert post(1).status_code == 503
        assert post(2).status_code == 503
    assert post(3).status_code == 200
    forged = client.post("/webhooks/google/", data=b"", content_type="text/plain",
                         headers={**headers, "X-Goog-Channel-Token": "forged"})
    assert forged.status_code == 403  # a refusal is not a valid request: not counted
    assert not SliRollup.objects.exists()  # counted in the cache until a check moves them

    availability = get_system_health()["slo"]["availability"]
    assert availability["sli"]["5m"] == pytest.approx(1 / 3, abs=1e-4)
    total = SliRollup.objects.get(resolution="total", provider="google")
    assert (total.requests_ok, total.requests_failed, total.notifications_received) == (1, 2, 1)
    sli.flush_requests()  # moved once: a second flush adds nothing
    assert SliRollup.objects.get(resolution="total").requests_failed == 2


def test_a_notification_is_fresh_when_its_sync_ends_within_a_minute_of_receipt(calendar):
    subscription = make_subscriptions(calendar, 1)[0]
    with time_machine.travel(T0, tick=False):
        rows = WebhookNotification.objects.bulk_create([
            WebhookNotification(subscription=subscription, provider="google",
                                received_at=T0 - timedelta(seconds=age), dedup_key=f"d{age}",
                                processing_status="processing", claimed_by="w1")
            for age in (30, 90)])
        notification_rows.finish("w1", rows, "completed", started=0.0)
        tallies = slo.window_tallies(T0, ("5m",))
    assert (tallies["freshness"]["5m"].good, tallies["freshness"]["5m"].total) == (1, 2)


def test_lag_percentiles_come_from_the_hourly_histogram():
    from apps.monitoring.services import rollups

    with time_machine.travel(T0, tick=False):
        sli.record_lags("google", [0.5] * 49 + [20.0] * 46 + [200.0] * 5)
        hour = rollups.lag_percentiles(T0 - timedelta(hours=1))[T0]
    assert hour["p50"] == pytest.approx(10.0, abs=0.5)  # in the (10, 30] bucket, near its start
    assert 10 < hour["p95"] <= 30 and 120 < hour["p99"] <= 300


def test_metrics_exposes_the_sli_counters(client, live_worker):
    sli.record("google", requests_ok=7, requests_failed=2, changes=5, changes_fresh=4)
    sli.count_request("microsoft", 503)  # still in the cache: the scrape moves it first
    body = client.get("/metrics").content.decode()
    assert 'calendar_sync_slo_requests_total{provider="google",result="ok"} 7.0' in body
    assert 'calendar_sync_slo_requests_total{provider="google",result="failed"} 2.0' in body
    assert 'calendar_sync_slo_requests_total{provider="microsoft",result="failed"} 1.0' in body
    assert 'calendar_sync_slo_changes_total{provider="google",result="stale"} 1.0' in body
    assert "# TYPE calendar_sync_slo_changes_total counter" in body


def test_the_page_shows_both_slos_the_budget_burn_and_a_week_of_status(client, staff_user,
                                                                        live_worker):
    client.force_login(staff_user)
    make_calendar()
    with time_machine.travel(T0 - timedelta(days=2), tick=False) as clock:
        health_check(send_alerts=False)
        clock.move_to(T0)
        traffic(T0 - timedelta(hours=3), T0, timedelta(minutes=10), requests=100,
                changes=100, stale_changes=5)
        sli.record_lags("google", [3.0, 4.0, 200.0], T0 - timedelta(hours=2))
        health_check(send_alerts=False)
        html = client.get("/webhooks/monitoring/").content.decode()
    assert 'data-slo="availability"' in html and 'data-slo="freshness"' in html
    assert "of the 28d error budget left" in html
    assert 'data-series="burn_freshness" data-points="1"' in html
    assert 'data-series="change_lag_p95" data-points="1"' in html
    start = html.index('id="status-history"')
    history = html[start:html.index("</svg>", start)]
    assert history.count("<rect") == 7 * 24
    assert history.count('class="healthy"') == 1 and history.count('class="degraded"') == 1


@pytest.mark.parametrize("provider", ["google", "microsoft"])
@pytest.mark.parametrize(("polled_after", "fresh"), [(timedelta(seconds=0), 1),
                                                     (timedelta(minutes=3), 0)])
def test_a_change_seen_only_by_polling_minutes_later_is_stale(sandbox, user, provider,
                                                              polled_after, fresh):
    from apps.calendars.models import Calendar
    from apps.calendars.services.polling import poll_due_calendars
    from apps.calendars.services.sync_engine import sync_calendar
    from apps.monitoring.models import ChangeLagBucket

    _, (calendar,), remote = connect_account(sandbox.url, user, provider,
                                             f"late-{provider}@example.com")
    sync_calendar(calendar)  # the first (full) sync: old events are not changes
    Writer(sandbox.url, remote).create(remote.calendar_ids[0], "lunch")
    Calendar.objects.filter(pk=calendar.pk).update(
        next_sync_at=None, last_synced_at=datetime.now(UTC) - timedelta(hours=1))
    with time_machine.travel(datetime.now(UTC) + polled_after):
        poll_due_calendars()
    total = SliRollup.objects.get(resolution="total", provider=provider)
    assert (total.changes, total.changes_fresh) == (1, fresh)
    # The lag histogram: within seconds (the provider's times may be whole seconds), or in the
    # (120 s, 300 s] bucket: three minutes late.
    bound = ChangeLagBucket.objects.get(provider=provider).le_seconds
    assert bound <= 5 if fresh else bound == 300


def test_with_the_cache_down_too_the_process_keeps_the_counts_until_it_answers(settings):
    working = settings.CACHES
    settings.CACHES = {"default": {**working["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    sli.count_request("google", 503)
    sli.count_request("google", 503)
    settings.CACHES = working
    sli.count_request("google", 200)  # the cache answers again: the process hands over
    sli.flush_requests()
    total = SliRollup.objects.get(resolution="total", provider="google")
    assert (total.requests_ok, total.requests_failed) == (1, 2)
