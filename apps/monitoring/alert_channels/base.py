"""The alert channel interface: one small class per destination, one error type.

Modelled on healthchecks' transports: a channel turns an ``AlertMessage`` into one request and
raises ``DeliveryError`` saying whether trying again could help. The alert manager records
every attempt and retries only transient failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import requests
from django.conf import settings

from apps.monitoring.models import LEVEL_RANK, IncidentEvent, Level
from calendar_sync import http


@dataclass(frozen=True)
class AlertMessage:
    """What every channel says about one incident event (opened, escalated, repeated...)."""

    key: str  # the incident's stable key: the PagerDuty dedup_key, the subject's tag
    level: str  # warning | critical
    event: str  # opened | escalated | repeated | resolved
    title: str
    text: str
    opened_at: datetime
    at: datetime
    dashboard_url: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def resolved(self) -> bool:
        return self.event == IncidentEvent.RESOLVED

    @property
    def headline(self) -> str:
        if self.resolved:
            return f"[RESOLVED] {self.title}"
        return f"[{self.level.upper()}] {self.title}"


class DeliveryError(Exception):
    """A failed delivery. ``permanent`` means retrying the same request cannot succeed."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel:
    name: ClassVar[str] = ""
    # The lowest incident level this channel is told about (the pager wakes people up).
    min_level: ClassVar[str] = Level.WARNING
    # Settings that must be non-empty for the channel to work.
    required_settings: ClassVar[tuple[str, ...]] = ()

    def missing_settings(self) -> list[str]:
        return [name for name in self.required_settings if not getattr(settings, name, None)]

    def wants(self, level: str) -> bool:
        return LEVEL_RANK.get(level, 0) >= LEVEL_RANK[self.min_level]

    def notify(self, message: AlertMessage) -> None:
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Values that must never appear in a recorded error (URLs with tokens, keys)."""
        return []


def post(channel: Channel, url: str, payload: Any, ok: tuple[int, ...] = (200, 201, 202, 204),
         headers: dict[str, str] | None = None) -> requests.Response:
    """POST JSON through the project's HTTP helper and classify the outcome."""
    try:
        response = http.post_json(url, payload, headers=headers)
    except requests.RequestException as exc:
        # The class name only: requests' messages embed the URL, which may be the secret.
        raise DeliveryError(f"network error: {type(exc).__name__}") from None
    if response.status_code in ok:
        return response
    # Redacted before it is cut: a secret straddling the cut would otherwise leak its head.
    body = redact(response.text, channel.secrets())[:200]
    permanent = response.status_code < 500 and response.status_code not in (408, 429)
    raise DeliveryError(f"HTTP {response.status_code}: {body}", permanent=permanent)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
