"""The demo accounts of `make run` (the ``seed_demo`` command): created in the running provider
sandbox, then connected like any account, under the ``demo`` user."""

from __future__ import annotations

from typing import Any

import requests
from django.contrib.auth import get_user_model

from apps.calendars.models import CalendarAccount
from apps.calendars.services.accounts import connect_account
from calendar_sync import http

DEMO_USERNAME = "demo"
DEMO_ACCOUNTS: tuple[tuple[str, str, list[str]], ...] = (
    ("google", "demo.google@example.com", ["Work", "Family"]),
    ("google", "demo.team@example.com", ["Team"]),
    ("microsoft", "demo.outlook@example.com", ["Calendar", "Projects"]),
)


class SandboxUnavailable(Exception):
    """``seed_demo`` could not reach the provider sandbox or it refused the request."""


def seed_demo_accounts(sandbox_url: str) -> list[CalendarAccount]:
    """Create the demo accounts in the running sandbox and connect them under the ``demo``
    user. Running it again reconnects the same accounts and calendars."""
    user, created = get_user_model().objects.get_or_create(
        username=DEMO_USERNAME, defaults={"email": "demo@example.com"})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    connected = []
    for provider, email, calendars in DEMO_ACCOUNTS:
        body = _sandbox_account(sandbox_url, provider, email, calendars)
        connected.append(connect_account(user, provider, email, str(body["refresh_token"])))
    return connected


def _sandbox_account(sandbox_url: str, provider: str, email: str,
                     calendars: list[str]) -> dict[str, Any]:
    url = f"{sandbox_url.rstrip('/')}/_sandbox/accounts"
    hint = "start it with `python -m sandbox --port 8900` or set SANDBOX_URL"
    try:
        # The sandbox admin API is not a provider call: not recorded as one.
        response = http.post_json(url, {"provider": provider, "email": email,
                                        "calendars": calendars}, timeout=5.0)
    except requests.RequestException as exc:
        raise SandboxUnavailable(f"the sandbox at {sandbox_url} is not reachable "
                                 f"({type(exc).__name__}); {hint}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code not in (200, 201) or not isinstance(body, dict) \
            or not body.get("refresh_token"):
        raise SandboxUnavailable(f"the sandbox at {sandbox_url} refused to create {email} "
                                 f"(HTTP {response.status_code}); is it the provider sandbox?")
    return body
