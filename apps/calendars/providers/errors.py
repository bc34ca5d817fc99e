"""Typed provider errors: what the rest of the code can act on, whatever the provider."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class ProviderError(Exception):
    """Base class. ``status_code`` is the HTTP status when there was a response."""

    kind = "provider_error"

    def __init__(self, message: str, *, status_code: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class CursorExpired(ProviderError):
    """Sync token / delta link no longer valid (410 fullSyncRequired, syncStateNotFound…):
    run a full resync."""

    kind = "cursor_expired"


class RateLimited(ProviderError):
    """429, or Google 403 rateLimitExceeded/userRateLimitExceeded/quotaExceeded. Back off for
    ``retry_after`` seconds (the provider's Retry-After, else a computed backoff)."""

    kind = "rate_limited"


class AuthRevoked(ProviderError):
    """invalid_grant on refresh, or 401 after a fresh token: the user must reconnect."""

    kind = "auth_revoked"


class NotFound(ProviderError):
    """The channel, subscription, calendar or event is gone."""

    kind = "not_found"


class Transient(ProviderError):
    """5xx, timeouts, connection errors: retry later with backoff."""

    kind = "transient"


class ClientError(ProviderError):
    """Any other 4xx: our request is wrong; retrying the same request will not help."""

    kind = "client_error"


class BadEvent(ProviderError):
    """One event from the provider cannot be parsed; it is recorded and skipped."""

    kind = "bad_event"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None
    when absent or unreadable (the caller then computes its own backoff)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
