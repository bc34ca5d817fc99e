"""Connecting calendar accounts and keeping their calendar lists and tokens in order.

Used by the OAuth callback view, the ``connect_account`` and ``seed_demo`` commands, and by
whoever catches a provider's ``AuthRevoked`` (``mark_reauth_required``: the sync engine, the
subscription manager); the provider clients only raise it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.calendars.models import Calendar, CalendarAccount, Provider
from apps.calendars.providers import oauth
from apps.calendars.providers.base import RemoteCalendar
from apps.calendars.providers.clients import get_client
from apps.calendars.providers.errors import ClientError

log = logging.getLogger(__name__)

# Written to Calendar.last_sync_error when the provider stops listing a calendar; a calendar
# disabled for this reason (and only this one) is enabled again when it comes back.
CALENDAR_GONE = "The provider no longer lists this calendar."

class AccountConflict(Exception):
    """The mailbox is already connected by another user (provider+email is unique)."""


def connect_account(user: Any, provider: str, email: str, refresh_token: str, *,
                    access_token: str = "", token_expires_at: datetime | None = None,
                    remote_calendars: list[RemoteCalendar] | None = None) -> CalendarAccount:
    """Create or update the account with these tokens, make it ``active`` (reconnecting a
    ``reauth_required`` one) and mirror its calendar list.

    Without an access token the refresh token is spent first, so a bad one fails here
    (``AuthRevoked``) before any row is written; Microsoft's rotated token is the one saved."""
    if provider not in Provider.values:
        raise ValueError(f"unknown provider {provider!r}")
    email = email.strip()
    _check_owner(user, provider, email)  # before spending (rotating) the refresh token
    if not access_token:
        grant = oauth.refresh_grant(provider, refresh_token)
        access_token, token_expires_at = grant.access_token, grant.expires_at
        refresh_token = grant.refresh_token or refresh_token
    with transaction.atomic():
        account = (CalendarAccount.objects.select_for_update()
                   .filter(provider=provider, email__iexact=email).first())
        _check_owner(user, provider, email, account)
        if account is None:
            account = CalendarAccount(user=user, provider=provider, email=email)
        account.access_token = access_token
        account.refresh_token = refresh_token
        account.token_expires_at = token_expires_at
        account.status = CalendarAccount.Status.ACTIVE
        account.last_error = ""
        account.save()
    sync_calendar_list(account, remote=remote_calendars)
    log.info("connected %s account %s", provider, account.pk)
    return account


def _check_owner(user: Any, provider: str, email: str,
                 account: CalendarAccount | None = None) -> None:
    if account is None:
        account = CalendarAccount.objects.filter(provider=provider, email__iexact=email).first()
    if account is not None and account.user_id != user.pk:
        raise AccountConflict(f"{provider}:{email} is connected by another user")


def complete_authorization(user: Any, provider: str, code: str, code_verifier: str,
                           redirect_uri: str) -> CalendarAccount:
    """The OAuth callback's work: redeem the code, find out which mailbox it is, connect it."""
    grant = oauth.exchange_code(provider, code, redirect_uri, code_verifier)
    # An unsaved account lets the client list calendars before we know the email.
    probe = CalendarAccount(user=user, provider=provider, access_token=grant.access_token,
                            refresh_token=grant.refresh_token,
                            token_expires_at=grant.expires_at)
    remote = get_client(probe).list_calendars()
    email = grant.email or next((c.owner_email for c in remote if c.primary and c.owner_email),
                                "")
    if not email:
        raise ClientError(f"could not tell which {provider} mailbox was connected")
    refresh_token = probe.refresh_token
    if not refresh_token:  # Google omits it when consent was not shown again
        existing = CalendarAccount.objects.filter(provider=provider, email__iexact=email,
                                                  user=user).first()
        refresh_token = existing.refresh_token if existing else ""
    if not refresh_token:
        raise ClientError(f"{provider} returned no refresh token; remove the app's access "
                          "in the account settings and connect again")
    return connect_account(user, provider, email, refresh_token,
                           access_token=probe.access_token,
                           token_expires_at=probe.token_expires_at, remote_calendars=remote)


def sync_calendar_list(account: CalendarAccount,
                       remote: list[RemoteCalendar] | None = None) -> list[Calendar]:
    """Create/rename Calendar rows for the provider's list; calendars no longer listed stop
    syncing (kept, with their events, in case they come back). Returns the listed ones."""
    if remote is None:
        remote = get_client(account).list_calendars()
    listed: list[Calendar] = []
    for item in remote:
        name = item.name[:255]
        calendar, created = Calendar.objects.get_or_create(
            calendar_account=account, provider_calendar_id=item.id, defaults={"name": name})
        changed = []
        if not created and calendar.name != name:
            calendar.name = name
            changed.append("name")
        if not calendar.sync_enabled and calendar.last_sync_error == CALENDAR_GONE:
            calendar.sync_enabled, calendar.last_sync_error = True, ""
            changed += ["sync_enabled", "last_sync_error"]
        if changed:
            calendar.save(update_fields=changed)
        listed.append(calendar)
    (account.calendars.exclude(pk__in=[c.pk for c in listed]).filter(sync_enabled=True)
     .update(sync_enabled=False, last_sync_error=CALENDAR_GONE))
    return listed


def mark_reauth_required(account: CalendarAccount, reason: str, *,
                         only_if_active: bool = False) -> bool:
    """Stop using an account until the user reconnects it: status ``reauth_required``, the
    reason in ``last_error`` (never a secret), the dead tokens dropped. A ``disabled`` account
    stays disabled; with ``only_if_active`` an account already marked keeps its first reason
    (callers that only make sure of it after the client did). Returns whether it changed."""
    reason = reason[:500]
    changes = {"status": CalendarAccount.Status.REAUTH_REQUIRED, "last_error": reason,
               "access_token": "", "refresh_token": "", "token_expires_at": None}
    if account.status == CalendarAccount.Status.DISABLED:
        return False
    updated = 1
    if account.pk is not None:
        rows = CalendarAccount.objects.filter(pk=account.pk)
        rows = (rows.filter(status=CalendarAccount.Status.ACTIVE) if only_if_active
                else rows.exclude(status=CalendarAccount.Status.DISABLED))
        updated = rows.update(updated_at=timezone.now(), **changes)
    if updated:
        for name, value in changes.items():
            setattr(account, name, value)
        log.warning("%s account %s needs re-authorization: %s", account.provider, account.pk,
                    reason)
    return bool(updated)
