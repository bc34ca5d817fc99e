"""Provider clients. ``get_client(account)`` returns the implementation for its provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.calendars.models import CalendarAccount
    from apps.calendars.providers.base import ProviderClient


def get_client(account: CalendarAccount) -> ProviderClient:
    if account.provider == "google":
        from apps.calendars.providers.google import GoogleClient

        return GoogleClient(account)
    if account.provider == "microsoft":
        from apps.calendars.providers.microsoft import MicrosoftClient

        return MicrosoftClient(account)
    raise ValueError(f"unknown provider {account.provider!r}")
