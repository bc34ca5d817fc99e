"""``/metrics``: the process metrics of ``calendar_sync.metrics`` plus gauges read from the
database at scrape time (subscriptions by status, the latest health status, the queue, workers,
open incidents).

Under gunicorn with ``PROMETHEUS_MULTIPROC_DIR`` set, every worker process writes its counters
and histograms to files in that directory and the exposition merges them, so a scrape sees the
totals whichever worker answers. Labels are bounded sets (status, level): never an id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from apps.monitoring.models import HealthSnapshot, HealthStatus, Incident, Level, SliRollup
from apps.webhooks.models import (
    SUBSCRIPTION_STATUSES,
    WebhookNotification,
    WebhookSubscription,
    WorkerHeartbeat,
)
from calendar_sync import sli

log = logging.getLogger(__name__)



class DatabaseCollector:
    """Gauges computed from rows on every scrape (a few indexed queries)."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("calendar_sync_database_up",
                               "1 when /metrics could read the database.")
        try:
            families = list(self._families())
        except DatabaseError as exc:
            log.warning("/metrics: database unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    @staticmethod
    def _families() -> Iterator[Metric]:
        now = timezone.now()
        subs = dict(WebhookSubscription.objects.values("status").annotate(n=Count("id"))
                    .values_list("status", "n"))
        gauge = GaugeMetricFamily("calendar_sync_webhook_subscriptions",
                                  "Push subscriptions by status.", labels=["status"])
        for status in SUBSCRIPTION_STATUSES:
            gauge.add_metric([status], subs.get(status, 0))
        yield gauge

        latest = HealthSnapshot.objects.order_by("-created_at").values(
            "status", "created_at").first()
        gauge = GaugeMetricFamily("calendar_sync_health_status",
                                  "1 for the status of the latest stored health check.",
                                  labels=["status"])
        for status in HealthStatus:
            gauge.add_metric([status], 1 if latest and latest["status"] == status else 0)
        yield gauge
        if latest:
            yield GaugeMetricFamily("calendar_sync_health_check_age_seconds",
                                    "Seconds since the latest stored health check.",
                                    value=(now - latest["created_at"]).total_seconds())

        waiting = WebhookNotification.objects.waiting().aggregate(
            n=Count("id"), oldest=Min("received_at"))
        yield GaugeMetricFamily("calendar_sync_notifications_waiting",
                                "Notifications pending or being processed.", value=waiting["n"])
        oldest = waiting["oldest"]
        yield GaugeMetricFamily("calendar_sync_notification_backlog_age_seconds",
                                "Age of the oldest waiting notification (0 when none).",
                                value=(now - oldest).total_seconds() if oldest else 0)

        fresh = now - timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_SECONDS)
        alive = WorkerHeartbeat.objects.filter(stopped_at__isnull=True,
                                               last_seen_at__gte=fresh).count()
        yield GaugeMetricFamily("calendar_sync_workers_alive",
                                "Workers with a fresh heartbeat.", value=alive)

        levels = dict(Incident.objects.filter(resolved_at__isnull=True).values("level")
                      .annotate(n=Count("id")).values_list("level", "n"))
        gauge = GaugeMetricFamily("calendar_sync_incidents_open", "Open alert incidents.",
                                  labels=["level"])
        for level in Level:
            gauge.add_metric([level], levels.get(level, 0))
        yield gauge
        yield from _sli_counters()


def _sli_counters() -> Iterator[Metric]:
    """The SLIs' running totals, so Prometheus can compute the same burn rates
    (``deploy/prometheus/slo-rules.yml``). Monotonic: the total rows are never pruned."""
    sli.flush_requests()  # what the receivers counted in the cache since the last check
    requests = CounterMetricFamily(
        "calendar_sync_slo_requests", "Valid provider requests by answer: ok (2xx) or "
        "failed (5xx, including 503 while the database is down).", labels=["provider", "result"])
    changes = CounterMetricFamily(
        "calendar_sync_slo_changes", "Changes (processed notifications, polled changes) by "
        "whether they were visible locally within SLO_FRESHNESS_SECONDS.",
        labels=["provider", "result"])
    for row in SliRollup.objects.filter(resolution=SliRollup.Resolution.TOTAL).values(
            "provider", "requests_ok", "requests_failed", "changes", "changes_fresh"):
        provider = row["provider"]
        requests.add_metric([provider, "ok"], row["requests_ok"])
        requests.add_metric([provider, "failed"], row["requests_failed"])
        changes.add_metric([provider, "fresh"], row["changes_fresh"])
        changes.add_metric([provider, "stale"], row["changes"] - row["changes_fresh"])
    yield requests
    yield changes


class _ProcessMetrics:
    """This process's own registry (single-process servers: runserver, tests)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def render(accept: str = "") -> tuple[bytes, str]:
    """The exposition in the format the scraper asked for (text 0.0.4 by default), and its
    content type."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessMetrics())
    registry.register(DatabaseCollector())
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
