"""Environment helpers that fail loudly on malformed values.

A typo in an environment variable must stop the process at start-up with a message that names
the variable, not silently fall back to a default that hides the mistake in production.
"""

from __future__ import annotations

import ipaddress
import math
import os
from urllib.parse import parse_qs, unquote, urlparse


class ImproperEnvironment(Exception):
    """Raised when an environment variable is set to something unusable."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperEnvironment(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def envint(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperEnvironment(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperEnvironment(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperEnvironment(f"{name} must be <= {maximum}, got {value}")
    return value


def envfloat(name: str, default: float, minimum: float | None = 0.0) -> float:
    """A number; durations, fractions and percentages are never negative (``minimum`` 0)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperEnvironment(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise ImproperEnvironment(f"{name} must be a number >= {minimum:g}, got {raw!r}")
    return value


def envchoice(name: str, default: str, choices: tuple[str, ...], upper: bool = False) -> str:
    """One of ``choices`` (compared case-insensitively; returned upper- or lower-case)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = raw.upper() if upper else raw.lower()
    if value not in choices:
        raise ImproperEnvironment(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def envlist(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def envnetworks(name: str, default: list[str]) -> list[str]:
    """A comma-separated list of IP addresses or CIDR ranges, each checked here so that a typo
    stops start-up instead of failing requests later."""
    values = envlist(name, default)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ImproperEnvironment(
                f"{name}: {value!r} is not an IP address or CIDR range") from None
    return values


def require(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperEnvironment(f"{name} must be set for this settings module")
    return value


def database_from_url(url: str, conn_max_age: int = 0) -> dict:
    """Translate ``postgres://user:pass@host:port/name?sslmode=x`` into a DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "sqlite"}:
        raise ImproperEnvironment(f"DATABASE_URL scheme {parsed.scheme!r} is not supported")
    if parsed.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.path or ":memory:"}
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": conn_max_age,
        "OPTIONS": options,
    }
