"""Provider clients. ``get_client(account)`` returns the implementation for its provider."""

from __future__ import annotations

from apps.calendars.models import CalendarAccount
from apps.calendars.providers.base import ProviderClient
from apps.calendars.providers.google import GoogleClient
from apps.calendars.providers.microsoft import MicrosoftClient


def get_client(account: CalendarAccount) -> ProviderClient:
    if account.provider == "google":
        return GoogleClient(account)
    if account.provider == "microsoft":
        return MicrosoftClient(account)
    raise ValueError(f"unknown provider {account.provider!r}")
