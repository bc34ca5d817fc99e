"""Small helpers: provider time formats, opaque tokens, ids."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def rfc3339(ts: float) -> str:
    """Google's timestamp form: millisecond precision, Z suffix."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def graph_time(ts: float) -> str:
    """Graph's timestamp form: seven fractional digits, Z suffix."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond * 10:07d}Z"


def http_date(ts: float) -> str:
    """`Tue, 19 Nov 2013 01:13:52 GMT`, the form of X-Goog-Channel-Expiration."""
    return formatdate(ts, usegmt=True)


def _zone(name: str | None) -> Any:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # Windows zone names ("Pacific Standard Time") are not in tzdata: take them as UTC.
        return UTC


def parse_instant(value: Any, tz_name: str | None = None) -> float | None:
    """Epoch seconds from an ISO 8601 string, or None. Naive values use `tz_name` (else UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_zone(tz_name))
    return dt.timestamp()


def event_time(node: Any) -> float | None:
    """The instant of a Google {dateTime|date, timeZone} or Graph {dateTime, timeZone} node."""
    if not isinstance(node, dict):
        return None
    tz = node.get("timeZone")
    if node.get("dateTime"):
        return parse_instant(node["dateTime"], tz)
    if node.get("date"):
        return parse_instant(str(node["date"]) + "T00:00:00", tz)
    return None


def overlaps(start: float | None, end: float | None, lo: float | None, hi: float | None) -> bool:
    """Whether [start, end) meets [lo, hi); unknown bounds never exclude."""
    if start is not None and hi is not None and start >= hi:
        return False
    if end is not None and lo is not None and end <= lo:
        return False
    return True


def encode_token(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


_BASE32HEX = "0123456789abcdefghijklmnopqrstuv"


def google_id(length: int = 26) -> str:
    """Google event ids use the base32hex alphabet (lower-case a-v and digits)."""
    return "".join(secrets.choice(_BASE32HEX) for _ in range(length))


def graph_id(prefix: str = "AAMkAG") -> str:
    """Graph ids are long opaque base64 strings; padding '=' kept, as the real ones have."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(45)).decode() + "="


def guid() -> str:
    return str(uuid.uuid4())


def new_secret(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)
