"""What both provider clients share: access tokens kept fresh, one authorized request path
with a single refresh-and-retry on 401, and network failures mapped to ``Transient``.

Token refresh happens under the account's advisory lock (``calendar_sync/locks.py``) so that
two workers never spend the same Microsoft refresh token (it rotates on every use; the loser
would see ``invalid_grant`` and its caller wrongly mark a healthy account ``reauth_required``).
Only other
refreshers wait for it: no transaction and no row lock is held across the token call, so a slow
identity provider never blocks the other writers of the account row (backoff, status).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.calendars.models import CalendarAccount
from apps.calendars.providers import oauth
from apps.calendars.providers.base import ProviderClient
from apps.calendars.providers.errors import (
    AuthRevoked,
    ClientError,
    NotFound,
    ProviderError,
    RateLimited,
    Transient,
    parse_retry_after,
)
from calendar_sync import http
from calendar_sync.locks import advisory_lock

# The advisory lock namespace of token refreshes ("CSTK"), keyed by the account id.
TOKEN_LOCK_NAMESPACE = 0x4353544B
_TOKEN_FIELDS = ("access_token", "refresh_token", "token_expires_at")


class AuthorizedClient(ProviderClient):
    label = ""  # "Google" / "Microsoft", for messages

    # --- errors -------------------------------------------------------------------------------
    def error_for(self, response: requests.Response, operation: str) -> ProviderError | None:
        """The typed error for a response (None for a success). Never includes a secret: the
        message holds the status, the provider's reason codes and its (trimmed) message."""
        status = response.status_code
        if status < 400:
            return None
        reasons, detail = self.error_details(error_object(response))
        message = f"{self.label} {operation} answered {status}"
        if reasons:
            message += f" ({', '.join(sorted(reasons))})"
        if detail:
            message += f": {short(detail)}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        special = self.provider_error(status, reasons, operation, message, retry_after)
        if special is not None:
            return special
        if status == 429:
            return RateLimited(message, status_code=status, retry_after=retry_after)
        if status == 401:
            return AuthRevoked(message, status_code=status)
        if status == 404:
            return NotFound(message, status_code=status)
        if status >= 500:
            return Transient(message, status_code=status, retry_after=retry_after)
        return ClientError(message, status_code=status)

    # --- provider specifics -------------------------------------------------------------------
    @abstractmethod
    def error_details(self, error: dict[str, Any]) -> tuple[set[str], str]:
        """(reason codes, message) from the body's ``error`` object ({} when there is none)."""

    @abstractmethod
    def provider_error(self, status: int, reasons: set[str], operation: str, message: str,
                       retry_after: float | None) -> ProviderError | None:
        """The provider's own mappings, checked before the common ones (None: no opinion)."""

    # --- tokens -------------------------------------------------------------------------------
    def ensure_access_token(self) -> str:
        """A usable access token, refreshed first when missing or within the margin."""
        self._check_usable()
        if _is_fresh(self.account.access_token, self.account.token_expires_at):
            return self.account.access_token
        return self._refresh(stale=self.account.access_token)

    def refresh_access_token(self) -> None:
        self._check_usable()
        self._refresh(stale=self.account.access_token)

    def _check_usable(self) -> None:
        status = self.account.status
        if status != CalendarAccount.Status.ACTIVE:
            # "Stops touching it until it is reconnected": no network call at all.
            raise AuthRevoked(f"{self.label} account {self.account.pk} is {status}; "
                              "reconnect it first")

    def _refresh(self, stale: str) -> str:
        if self.account.pk is None:  # being connected: nothing saved yet, nothing to lock
            grant = self._grant(self.account.refresh_token)
            _apply_grant(self.account, grant)
            return self.account.access_token
        error: ProviderError | None = None
        # Long enough for another process's token call (connect + read timeouts) to finish.
        wait = settings.PROVIDER_CONNECT_TIMEOUT_SECONDS + settings.PROVIDER_READ_TIMEOUT_SECONDS
        with advisory_lock(TOKEN_LOCK_NAMESPACE, self.account.pk, wait=wait) as held:
            if not held:
                raise Transient(f"{self.label} account {self.account.pk}: a token refresh "
                                "elsewhere is taking too long")
            # Read after taking the lock: a refresh that finished meanwhile is seen here.
            row = CalendarAccount.objects.get(pk=self.account.pk)
            if row.status != CalendarAccount.Status.ACTIVE:
                error = AuthRevoked(f"{self.label} account {row.pk} is {row.status}")
            elif row.access_token != stale and _is_fresh(row.access_token, row.token_expires_at):
                pass  # another process refreshed it meanwhile: use theirs
            else:
                try:
                    grant = self._grant(row.refresh_token)
                except ProviderError as exc:  # raised after the block so the call row stays
                    error = exc
                else:
                    row = _store_grant(row.pk, row.refresh_token, grant)
        for name in (*_TOKEN_FIELDS, "status"):
            setattr(self.account, name, getattr(row, name))
        if error is not None:
            raise error  # AuthRevoked: the caller marks the account (services.accounts)
        return self.account.access_token

    def _grant(self, refresh_token: str) -> oauth.TokenGrant:
        return oauth.refresh_grant(self.provider, refresh_token, account_id=self.account.pk)

    # --- requests -----------------------------------------------------------------------------
    def send(self, method: str, url: str, operation: str, **kwargs: Any) -> requests.Response:
        """One authorized call: a 2xx response, or the typed error. On 401 the token is
        refreshed once and the call repeated; a second 401 means access was revoked."""
        token = self.ensure_access_token()
        response = self._attempt(method, url, operation, token, False, **kwargs)
        if response.status_code == 401:
            token = self._refresh(stale=token)
            response = self._attempt(method, url, operation, token, True, **kwargs)
            if response.status_code == 401:
                raise AuthRevoked(f"{self.label} {operation} answered 401 with a fresh token",
                                  status_code=401)
        error = self.error_for(response, operation)
        if error is not None:
            raise error
        return response

    def send_json(self, method: str, url: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        response = self.send(method, url, operation, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Transient(f"{self.label} {operation} answered {response.status_code} "
                            "without a JSON object", status_code=response.status_code)
        return body

    def _attempt(self, method: str, url: str, operation: str, token: str, final: bool,
                 **kwargs: Any) -> requests.Response:
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}",
                   "Accept": "application/json"}
        try:
            return http.request(method, url, provider=self.provider, operation=operation,
                                account_id=self.account.pk, headers=headers,
                                classify=self._classifier(operation, final), **kwargs)
        except requests.RequestException as exc:
            # The exception text holds the URL (delta links carry cursors): keep the type only.
            raise Transient(f"{self.label} {operation} failed: {type(exc).__name__}") from None

    def _classifier(self, operation: str, final: bool) -> Callable[[requests.Response], str]:
        def classify(response: requests.Response) -> str:
            if response.status_code == 401:
                return "auth_revoked" if final else "auth"
            error = self.error_for(response, operation)
            return error.kind if error else ""

        return classify


def _is_fresh(token: str, expires_at: datetime | None) -> bool:
    if not token or expires_at is None:
        return False
    margin = timedelta(seconds=settings.PROVIDER_TOKEN_REFRESH_MARGIN_SECONDS)
    return expires_at - margin > timezone.now()


def _store_grant(pk: int, spent: str, grant: oauth.TokenGrant) -> CalendarAccount:
    """Save the grant unless the account was reconnected during the token call (its new
    tokens win: ours came from the chain the reconnection replaced). The row lock lasts
    only this read-compare-write, never the HTTP call."""
    with transaction.atomic():
        row = CalendarAccount.objects.select_for_update().get(pk=pk)
        if row.refresh_token == spent:
            _apply_grant(row, grant)
            row.save(update_fields=[*_TOKEN_FIELDS, "updated_at"])
    return row


def _apply_grant(account: CalendarAccount, grant: oauth.TokenGrant) -> None:
    account.access_token = grant.access_token
    account.token_expires_at = grant.expires_at
    if grant.refresh_token:  # Microsoft rotation: the old one is spent from now on
        account.refresh_token = grant.refresh_token


def error_object(response: requests.Response) -> dict[str, Any]:
    """The ``error`` object of a JSON error body (Google and Graph both use one), or {}."""
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def short(text: Any, limit: int = 200) -> str:
    """A provider message trimmed for our own error messages."""
    value = " ".join(str(text or "").split())
    return value if len(value) <= limit else value[: limit - 1] + "…"
