"""``get_client(account)``: the provider client for an account. A module of its own, not the
package's ``__init__``, so that importing one provider module (``oauth``, ``errors``) never
imports every client with it."""

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
