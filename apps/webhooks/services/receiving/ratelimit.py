"""Rate limiting of abusive webhook sources, on the shared Django cache.

Only what a receiver would refuse anyway is limited: rejected or malformed requests per client
address, and requests per unknown channel. A valid notification never passes through here, so
it is never refused for rate (a burst for one calendar costs one sync: the worker coalesces).

Fixed windows: one counter per (scope, identifier, window) with the window's length as its
expiry. Identifiers are hashed so that attacker-chosen strings never become cache keys.

When the cache is unreachable the limiter fails open (the request is allowed), stops asking the
cache for a few seconds so that every request does not pay a connect timeout, and records it:
a Prometheus counter, a ``rate_limit_fail_open`` WebhookCounter row (visible to every process,
e.g. the health monitor) and :func:`fail_open_state` for this process.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from apps.webhooks.services.receiving import counters
from apps.webhooks.services.ttl_cache import TTLCache
from calendar_sync.metrics import RATE_LIMIT_FAIL_OPEN

logger = logging.getLogger(__name__)

# After a cache failure, skip the cache for this long (fail open without waiting on it).
CACHE_RETRY_AFTER_SECONDS = 5.0
FAIL_OPEN_COUNTER_KIND = "rate_limit_fail_open"
UNTRUSTED_PROXY_KEY = "webhooks:untrusted_proxy"
UNTRUSTED_NOTE_SECONDS = 60.0  # per process: one cache write a minute at most
UNTRUSTED_PROXY_MEMORY_SECONDS = 7 * 24 * 3600
_untrusted_noted = TTLCache(max_entries=1)


@dataclass(frozen=True)
class Decision:
    limited: bool
    retry_after: int = 0  # seconds until the window ends (for the Retry-After header)


ALLOWED = Decision(limited=False)


# This process's record of the cache being unreachable: "skip" (not asked again for
# CACHE_RETRY_AFTER_SECONDS), and when ("last_failure_at", wall clock) and how often ("count").
_fail_open = TTLCache(max_entries=3)


def _cache_failed() -> None:
    with _fail_open.lock:
        _fail_open.put("skip", True, CACHE_RETRY_AFTER_SECONDS)
        _fail_open.put("last_failure_at", time.time(), math.inf)
        _fail_open.put("count", _fail_open.get("count", 0) + 1, math.inf)


def _spend(scope: str, identifier: str, window: int, n: int = 1) -> tuple[int, float]:
    """Add ``n`` to (scope, identifier)'s counter for the current fixed window; return the new
    count and the window's end. Raises whatever the cache raises."""
    now = time.time()
    index = int(now // window)
    digest = hashlib.sha256(identifier.encode("utf-8", "backslashreplace")).hexdigest()[:32]
    key = f"webhooks:rl:{scope}:{digest}:{index}"
    try:
        cache.add(key, 0, timeout=window + 1)
        count = cache.incr(key, n)
    except ValueError:
        # The key expired between add and incr: this request opens a new window.
        count = n
    return count, (index + 1) * window


def within_budget(scope: str, identifier: str, n: int, limit: int, window: int,
                  fail_open: bool = True) -> bool:
    """Spend ``n`` from (scope, identifier)'s budget of ``limit`` per ``window`` seconds;
    whether it was all within. When the cache cannot say: ``fail_open``."""
    try:
        count, _ = _spend(scope, identifier, window, n)
    except Exception:  # noqa: BLE001 - any cache failure means "cannot decide"
        logger.warning("budget %s: cache unreachable", scope)
        return fail_open
    return count <= limit


def hit(scope: str, identifier: str, provider: str) -> Decision:
    """Count one refused request for (scope, identifier); say whether it is over the limit."""
    if not settings.WEBHOOK_RATE_LIMIT_ENABLED:
        return ALLOWED
    if _fail_open.get("skip", False):
        _record_fail_open(provider)
        return ALLOWED
    now = time.time()
    try:
        count, window_end = _spend(scope, identifier, settings.WEBHOOK_RATE_LIMIT_WINDOW_SECONDS)
    except Exception:  # noqa: BLE001 - any cache failure means "cannot decide": allow
        _cache_failed()
        _record_fail_open(provider)
        logger.warning("rate limiter: cache unreachable, failing open")
        return ALLOWED
    if count <= settings.WEBHOOK_RATE_LIMIT_MAX_REQUESTS:
        return ALLOWED
    return Decision(limited=True, retry_after=max(1, math.ceil(window_end - now)))


def _record_fail_open(provider: str) -> None:
    RATE_LIMIT_FAIL_OPEN.inc()
    counters.count_event(provider, FAIL_OPEN_COUNTER_KIND)


def fail_open_state() -> dict:
    """Whether this process is currently letting requests through unchecked, for health."""
    return {
        "failing_open": bool(_fail_open.get("skip", False)),
        "last_failure_at": _fail_open.get("last_failure_at"),
        "fail_open_count": _fail_open.get("count", 0),
    }


def client_ip(request: HttpRequest) -> str:
    """The client's address: the peer, or the last untrusted X-Forwarded-For hop behind a
    trusted proxy (earlier hops are client-supplied and could be forged)."""
    peer = request.META.get("REMOTE_ADDR", "") or ""
    if not is_trusted_proxy(peer):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    for hop in reversed([h.strip() for h in forwarded.split(",")]):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            break  # garbage: stop believing the header here
        if not is_trusted_proxy(address):
            return address
    return peer


@functools.lru_cache(maxsize=8)
def _trusted_networks(
        entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"WEBHOOK_TRUSTED_PROXIES: {exc}") from None


def is_trusted_proxy(address: str) -> bool:
    """Whether ``address`` is in WEBHOOK_TRUSTED_PROXIES (addresses or CIDR ranges)."""
    try:
        ip = ipaddress.ip_address(address)
        networks = _trusted_networks(tuple(settings.WEBHOOK_TRUSTED_PROXIES))
    except ValueError:
        return False
    except ImproperlyConfigured:
        # Checked at start-up (settings.env.envnetworks); a bad value set later trusts nobody
        # rather than failing the request.
        logger.error("WEBHOOK_TRUSTED_PROXIES is malformed: trusting no proxy")
        return False
    return any(ip in net for net in networks)


def note_forwarding_peer(request: HttpRequest) -> None:
    """Remember (in the cache, at most once a minute per process) a peer that forwards for
    others but is not a trusted proxy: behind it every client would share one rate-limit
    bucket. ``validate_deployment`` reports it."""
    if "HTTP_X_FORWARDED_FOR" not in request.META:
        return
    peer = request.META.get("REMOTE_ADDR", "") or ""
    if is_trusted_proxy(peer) or not _untrusted_noted.add("noted", True, UNTRUSTED_NOTE_SECONDS):
        return
    try:
        cache.set(UNTRUSTED_PROXY_KEY, {"address": peer[:64], "at": time.time()},
                  timeout=UNTRUSTED_PROXY_MEMORY_SECONDS)
    except Exception:  # noqa: BLE001 - a diagnostic only: never fails the request
        logger.info("untrusted proxy %s not recorded: cache unreachable", peer[:64])


def untrusted_proxy_seen() -> dict | None:
    """The last forwarding peer that was not trusted (address, unix time), if any."""
    return cache.get(UNTRUSTED_PROXY_KEY)
