"""Pre-deployment (``validate_monitoring_setup``) and post-deployment (``validate_deployment``)
checks. Each returns a ``Finding`` (not to be confused with the health cycle or the health
document's status rules); a failed finding that is only a warning does not fail the command.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from cryptography.fernet import Fernet
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from apps.monitoring.alert_channels import CHANNEL_CLASSES, configured_names
from apps.webhooks.models import WorkerHeartbeat
from apps.webhooks.probes import probe_cache, probe_database
from apps.webhooks.services.receiving.ratelimit import untrusted_proxy_seen
from calendar_sync import http

# The OAuth client id the development settings and the sandbox use.
DEVELOPMENT_CLIENT_ID = "calendar-sync-dev"


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str = ""
    warning_only: bool = False

    @property
    def label(self) -> str:
        if self.ok:
            return "ok"
        return "WARN" if self.warning_only else "FAIL"

    @property
    def fails(self) -> bool:
        return not self.ok and not self.warning_only

    def __str__(self) -> str:
        """The line both validation commands print for the check."""
        return f"[{self.label:>4}] {self.name}" + (f": {self.detail}" if self.detail else "")


def _is_local(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- pre-deployment ------------------------------------------------------------------------


def setup_checks() -> list[Finding]:
    names = configured_names()
    checks = [Finding("alert channels configured", bool(names),
                    ", ".join(names) if names else "WEBHOOK_ALERT_CHANNELS is empty: no alert "
                    "would reach anyone")]
    for name in names:
        cls = CHANNEL_CLASSES.get(name)
        if cls is None:
            checks.append(Finding(f"channel {name}", False,
                                f"unknown channel (known: {', '.join(CHANNEL_CLASSES)})"))
            continue
        missing = cls().missing_settings()
        checks.append(Finding(f"channel {name}", not missing,
                            f"missing {', '.join(missing)}" if missing else "settings present"))
    if "email" in names:
        bad = [r for r in settings.WEBHOOK_ALERT_EMAIL_RECIPIENTS if "@" not in r]
        checks.append(Finding("email recipients", not bad, f"not addresses: {bad}" if bad else ""))
    for setting in ("SLACK_WEBHOOK_URL", "EXTERNAL_ALERT_WEBHOOK_URL", "PAGERDUTY_EVENTS_URL"):
        url = getattr(settings, setting)
        if url and urlparse(url).scheme != "https" and not _is_local(url):
            checks.append(Finding(setting, False, "not https: alerts would travel in clear"))
    checks.append(Finding("on-call pager", "pagerduty" in names,
                        "critical incidents page PagerDuty" if "pagerduty" in names
                        else "no pagerduty channel: critical incidents page nobody",
                        warning_only=True))
    return checks + _threshold_checks()


def _threshold_checks() -> list[Finding]:
    t = settings.HEALTH_THRESHOLDS
    pairs = [("subscription_health_critical", "subscription_health_healthy"),
             ("success_rate_critical", "success_rate_healthy"),
             ("old_pending_degraded", "old_pending_critical"),
             ("failed_subscriptions_degraded", "failed_subscriptions_critical")]
    wrong = [f"{low} >= {high}" for low, high in pairs if t[low] >= t[high]]
    checks = [Finding("health thresholds ordered", not wrong, "; ".join(wrong))]
    normal = settings.HEALTH_CHECK_INTERVAL_SECONDS
    degraded = settings.HEALTH_DEGRADED_CHECK_INTERVAL_SECONDS
    checks.append(Finding("check intervals", 0 < degraded <= normal <= 300,
                        f"healthy every {normal} s, degraded every {degraded} s (alerts within "
                        "5 minutes need both <= 300 s)"))
    checks.append(Finding("alert repeat interval",
                        settings.ALERT_REPEAT_INTERVAL_SECONDS >= normal,
                        f"{settings.ALERT_REPEAT_INTERVAL_SECONDS} s", warning_only=True))
    token = bool(settings.METRICS_TOKEN)
    checks.append(Finding("metrics token", token or settings.DEBUG,
                        "set" if token else "METRICS_TOKEN empty: /metrics is public"
                        + (" (accepted while DEBUG)" if settings.DEBUG else ""),
                        warning_only=True))
    return checks


# --- post-deployment -----------------------------------------------------------------------


def _migrations() -> Finding:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    names = [f"{m.app_label}.{m.name}" for m, _ in plan]
    return Finding("migrations applied", not plan, f"unapplied: {', '.join(names)}" if plan else "")


def _database() -> Finding:
    probe_database()
    return Finding("database", True, connection.vendor)


def _cache() -> Finding:
    probe_cache()
    return Finding("cache", True)


def _health_endpoint() -> Finding:
    url = f"{settings.WEBHOOK_BASE_URL}/webhooks/health/"
    response = http.get(url, timeout=5)
    status = response.json().get("status") if response.status_code in (200, 503) else None
    return Finding("health endpoint", response.status_code == 200,
                 f"{url} answered {response.status_code} ({status})")


def _base_url() -> Finding:
    url = settings.WEBHOOK_BASE_URL
    if settings.PRODUCTION and not os.environ.get("WEBHOOK_BASE_URL", "").strip():
        return Finding("WEBHOOK_BASE_URL https", False,
                     f"WEBHOOK_BASE_URL is not set (default {url}): providers need the public "
                     "https address")
    if urlparse(url).scheme == "https":
        return Finding("WEBHOOK_BASE_URL https", True, url)
    # Production never accepts plain http, not even on loopback: providers cannot call it.
    local = not settings.PRODUCTION and (settings.DEBUG or _is_local(url))
    return Finding("WEBHOOK_BASE_URL https", local,
                 f"{url}: local deployment" if local else f"{url}: providers require https")


def _encryption_keys() -> Finding:
    bad = []
    for position, key in enumerate(settings.FIELD_ENCRYPTION_KEY, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            bad.append(position)
    return Finding("FIELD_ENCRYPTION_KEY", not bad,
                 f"key(s) {', '.join(map(str, bad))} of FIELD_ENCRYPTION_KEY are not Fernet keys "
                 "(32 url-safe base64-encoded bytes)" if bad
                 else f"{len(settings.FIELD_ENCRYPTION_KEY)} Fernet key(s)")


def _oauth_clients() -> Finding:
    dev = [name for name in ("GOOGLE_CLIENT_ID", "MS_CLIENT_ID")
           if getattr(settings, name) in ("", DEVELOPMENT_CLIENT_ID)]
    return Finding("OAuth clients", not dev,
                 f"{', '.join(dev)}: the development client id (or empty); set the real "
                 "client registered with the provider" if dev else "set",
                 warning_only=not settings.PRODUCTION)


def _metrics_token() -> Finding:
    token = bool(settings.METRICS_TOKEN) or getattr(settings, "METRICS_PUBLIC", False)
    return Finding("METRICS_TOKEN", token,
                 "set" if token else "METRICS_TOKEN is empty: /metrics would be public",
                 warning_only=not settings.PRODUCTION)


def _workers() -> Finding:
    fresh = timezone.now() - timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_SECONDS)
    alive = WorkerHeartbeat.objects.filter(stopped_at__isnull=True,
                                           last_seen_at__gte=fresh).count()
    return Finding("workers heartbeating", alive > 0, f"{alive} live workers")


def _alerting() -> Finding:
    failed = [c for c in setup_checks() if c.fails]
    return Finding("alerting configured", not failed, "; ".join(f"{c.name}: {c.detail}"
                                                              for c in failed))


def _trusted_proxies() -> Finding:
    seen = untrusted_proxy_seen()
    if not seen:
        return Finding("trusted proxies", True, ", ".join(settings.WEBHOOK_TRUSTED_PROXIES))
    when = datetime.fromtimestamp(seen["at"], tz=UTC).strftime("%Y-%m-%d %H:%M")
    return Finding("trusted proxies", False,
                 f"requests forwarded by {seen['address']} (last {when} UTC), which is not in "
                 "WEBHOOK_TRUSTED_PROXIES: all its clients share one rate-limit bucket",
                 warning_only=True)


DEPLOYMENT_CHECKS: tuple[Callable[[], Finding], ...] = (
    _migrations, _database, _cache, _health_endpoint, _base_url, _encryption_keys,
    _oauth_clients, _metrics_token, _workers, _alerting,
    _trusted_proxies,
)


def _run(check: Callable[[], Finding]) -> Finding:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - a check that blows up has failed
        name = check.__name__.strip("_").replace("_", " ")
        return Finding(name, False, f"error: {type(exc).__name__}")


def deployment_checks(wait_seconds: float = 0, pause: float = 2.0) -> list[Finding]:
    """Run every check; with ``wait_seconds``, retry the failing ones until they pass or the
    time is up (processes may still be starting)."""
    deadline = time.monotonic() + wait_seconds
    results = {check: _run(check) for check in DEPLOYMENT_CHECKS}
    while any(r.fails for r in results.values()) and time.monotonic() < deadline:
        time.sleep(pause)
        for check, result in results.items():
            if result.fails:
                results[check] = _run(check)
    return list(results.values())
