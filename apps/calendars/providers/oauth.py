"""OAuth 2.0 pieces both providers share: the authorize URL (state + PKCE S256), the
authorization-code exchange and the refresh grant.

Endpoints, client ids and scopes are read from settings at call time. Every token call goes
through ``calendar_sync.http`` (operation ``oauth.token``) so it is recorded like any other
provider call. Errors are the typed errors of ``errors.py``; ``invalid_grant`` is
``AuthRevoked``. No message built here contains a token, a code or a client secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.utils import timezone

from apps.calendars.providers.base import AuthorizationRequest
from apps.calendars.providers.errors import (
    AuthRevoked,
    ClientError,
    ProviderError,
    RateLimited,
    Transient,
    parse_retry_after,
)
from calendar_sync import http

PROVIDERS = ("google", "microsoft")
_LABEL = {"google": "Google", "microsoft": "Microsoft"}


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    refresh_token: str  # "" when none came back (Google never rotates on refresh)
    expires_at: datetime
    email: str = ""  # from the id_token, when the provider sent one


# --- endpoints and client configuration ------------------------------------------------------

def _check(provider: str) -> None:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")


def authorize_endpoint(provider: str) -> str:
    _check(provider)
    if provider == "google":
        return f"{settings.GOOGLE_OAUTH_BASE_URL}/o/oauth2/v2/auth"
    return f"{settings.MS_LOGIN_BASE_URL}/{settings.MS_TENANT}/oauth2/v2.0/authorize"


def token_endpoint(provider: str) -> str:
    _check(provider)
    if provider == "google":
        return settings.GOOGLE_TOKEN_URL
    return f"{settings.MS_LOGIN_BASE_URL}/{settings.MS_TENANT}/oauth2/v2.0/token"


def _client_credentials(provider: str) -> dict[str, str]:
    if provider == "google":
        client_id, secret = settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET
    else:
        client_id, secret = settings.MS_CLIENT_ID, settings.MS_CLIENT_SECRET
    creds = {"client_id": client_id}
    if secret:
        creds["client_secret"] = secret
    return creds


def scopes(provider: str) -> str:
    _check(provider)
    chosen = settings.GOOGLE_OAUTH_SCOPES if provider == "google" else settings.MS_OAUTH_SCOPES
    return " ".join(chosen)


# --- authorize -----------------------------------------------------------------------------

def new_pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(64)  # 86 characters, inside the 43..128 allowed
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def build_authorization(provider: str, redirect_uri: str,
                        login_hint: str = "") -> AuthorizationRequest:
    """The URL to send the user to, with a fresh ``state`` and PKCE verifier to keep in the
    session until the callback."""
    state = secrets.token_urlsafe(32)
    verifier, challenge = new_pkce_pair()
    params = {
        "client_id": _client_credentials(provider)["client_id"],
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": scopes(provider),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if provider == "google":
        # offline + consent: Google only returns a refresh token on a consent screen.
        params.update(access_type="offline", prompt="consent", include_granted_scopes="true")
    else:
        params["response_mode"] = "query"
    if login_hint:
        params["login_hint"] = login_hint
    url = f"{authorize_endpoint(provider)}?{urlencode(params)}"
    return AuthorizationRequest(url=url, state=state, code_verifier=verifier)


# --- token endpoint ------------------------------------------------------------------------

def exchange_code(provider: str, code: str, redirect_uri: str, code_verifier: str) -> TokenGrant:
    """Redeem an authorization code. ``AuthRevoked`` when the code is bad, used or expired."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": code_verifier, **_client_credentials(provider)}
    if provider == "microsoft":
        data["scope"] = scopes(provider)
    return _token_call(provider, data, account_id=None)


def refresh_grant(provider: str, refresh_token: str,
                  account_id: int | None = None) -> TokenGrant:
    """A new access token (and, for Microsoft, the rotated refresh token to save)."""
    if not refresh_token:
        raise AuthRevoked(f"{_LABEL[provider]} account has no refresh token; reconnect it")
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            **_client_credentials(provider)}
    if provider == "microsoft":
        data["scope"] = scopes(provider)  # Microsoft requires it on refresh
    return _token_call(provider, data, account_id=account_id)


def token_error(provider: str, response: requests.Response) -> ProviderError | None:
    """The typed error for a token-endpoint answer, or None for a success."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = _json_or_empty(response)
    error = str(body.get("error") or "") if isinstance(body, dict) else ""
    label = _LABEL[provider]
    message = f"{label} token endpoint answered {status}" + (f" ({error})" if error else "")
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if error == "invalid_grant":
        return AuthRevoked(message + ": the grant is revoked, expired or already used",
                           status_code=status)
    if status == 429:
        return RateLimited(message, status_code=status, retry_after=retry_after)
    if status >= 500 or error == "temporarily_unavailable":
        return Transient(message, status_code=status, retry_after=retry_after)
    return ClientError(message, status_code=status)


def _token_call(provider: str, data: dict[str, str], account_id: int | None) -> TokenGrant:
    def classify(response: requests.Response) -> str:
        err = token_error(provider, response)
        return err.kind if err else ""

    try:
        response = http.request(
            "POST", token_endpoint(provider), provider=provider, operation="oauth.token",
            account_id=account_id, classify=classify, data=data,
            headers={"Accept": "application/json"},
        )
    except requests.RequestException as exc:
        raise Transient(f"{_LABEL[provider]} token endpoint unreachable "
                        f"({type(exc).__name__})") from None
    err = token_error(provider, response)
    if err is not None:
        raise err
    body = _json_or_empty(response)
    access = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(access, str) or not access:
        raise Transient(f"{_LABEL[provider]} token endpoint answered without an access token")
    try:
        expires_in = int(body.get("expires_in") or 3600)
    except (TypeError, ValueError):
        expires_in = 3600
    return TokenGrant(
        access_token=access,
        refresh_token=str(body.get("refresh_token") or ""),
        expires_at=timezone.now() + timedelta(seconds=expires_in),
        email=_id_token_email(body.get("id_token")),
    )


def _json_or_empty(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def _id_token_email(id_token: Any) -> str:
    """The ``email`` (or Microsoft ``preferred_username``) claim of an id_token.

    The signature is not checked: the token came straight from the provider's token endpoint
    over TLS, which OpenID Connect Core 3.1.3.7 accepts in place of signature validation."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return ""
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return ""
    if not isinstance(claims, dict):
        return ""
    email = claims.get("email") or claims.get("preferred_username") or ""
    return email if isinstance(email, str) and "@" in email else ""
