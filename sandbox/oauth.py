"""Google- and Microsoft-shaped OAuth 2.0: auto-approving authorize, token endpoint, bearer check.

The one behavioural difference that matters to clients is kept: Microsoft rotates refresh
tokens on every use (the one sent becomes invalid), Google never returns a new one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from . import util
from .state import Account, AuthCode, Grant
from .web import ApiError, Request, Response, Router, json_response

if TYPE_CHECKING:
    from .server import SandboxServer

CODE_TTL = 600
_TENANT = r"/(?P<tenant>[^/]+)/oauth2/v2\.0"


def issue_tokens(app: SandboxServer, account: Account, client_id: str | None,
                 scope: str, refresh: bool = True) -> dict[str, object]:
    """Mint an access token (and a refresh token); caller holds the state lock."""
    state = app.state
    ttl = int(app.faults.get("access_token_ttl_seconds"))
    prefix = "ya29." if account.provider == "google" else "eyJ0eXAi."
    access = util.new_secret(prefix)
    state.access_tokens[access] = Grant(access, "access", account.id, account.provider,
                                        client_id, scope, expires_at=state.now() + ttl)
    out: dict[str, object] = {"access_token": access, "expires_in": max(ttl - 1, 1),
                              "scope": scope, "token_type": "Bearer"}
    if refresh:
        rt = util.new_secret("1//" if account.provider == "google" else "M.C5")
        state.refresh_tokens[rt] = Grant(rt, "refresh", account.id, account.provider,
                                         client_id, scope)
        out["refresh_token"] = rt
    return out


def authenticate(app: SandboxServer, req: Request, provider: str) -> Account:
    """The account behind the request's bearer token, or a provider-shaped 401."""
    header = req.header("authorization") or ""
    scheme, _, token = header.partition(" ")
    with app.state.lock:
        grant = app.state.access_tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        ok = (grant is not None and grant.provider == provider
              and grant.expires_at is not None and app.state.now() < grant.expires_at)
        if ok and grant is not None:
            return app.state.accounts[grant.account_id]
    if provider == "google":
        raise ApiError(401, "Invalid Credentials", "authError",
                       headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/",'
                                                    ' error="invalid_token"'},
                       extra={"status": "UNAUTHENTICATED"})
    raise ApiError(401, "Access token is empty, expired or invalid.",
                   "InvalidAuthenticationToken")


def _pkce_ok(code: AuthCode, verifier: str | None) -> bool:
    if not code.challenge:
        return True
    if not verifier:
        return False
    if (code.challenge_method or "plain").upper() == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    else:
        expected = verifier
    return hmac.compare_digest(expected, code.challenge)


class OAuth:
    def __init__(self, app: SandboxServer) -> None:
        self.app = app

    def register(self, router: Router) -> None:
        for path in ("/o/oauth2/v2/auth", "/o/oauth2/auth"):
            router.add("GET", path, self.google_authorize, "oauth.authorize", "oauth")
        for path in ("/token", "/o/oauth2/token", "/oauth2/v4/token"):
            router.add("POST", path, self.google_token, "oauth.token", "oauth")
        router.add("POST", "/revoke", self.google_revoke, "oauth.revoke", "oauth")
        router.add("GET", _TENANT + "/authorize", self.ms_authorize, "oauth.authorize", "oauth")
        router.add("POST", _TENANT + "/token", self.ms_token, "oauth.token", "oauth")

    # --- authorize ------------------------------------------------------------------------

    def google_authorize(self, req: Request) -> Response:
        return self._authorize(req, "google")

    def ms_authorize(self, req: Request, tenant: str) -> Response:
        return self._authorize(req, "microsoft")

    def _authorize(self, req: Request, provider: str) -> Response:
        client_id, redirect_uri = req.arg("client_id"), req.arg("redirect_uri")
        if not client_id or not redirect_uri:
            raise ApiError(400, "client_id and redirect_uri are required.", "invalid_request")
        if req.arg("response_type") != "code":
            raise ApiError(400, "Only response_type=code is supported.",
                           "unsupported_response_type")
        challenge = req.arg("code_challenge")
        method = req.arg("code_challenge_method") or ("plain" if challenge else None)
        if challenge and method not in ("S256", "plain"):
            raise ApiError(400, "Invalid code_challenge_method.", "invalid_request")
        state = self.app.state
        with state.lock:
            account = self._account_for_hint(provider, req.arg("login_hint"))
            code = util.new_secret("4/0A" if provider == "google" else "0.A")
            scope = req.arg("scope") or ""
            state.auth_codes[code] = AuthCode(
                code=code, provider=provider, account_id=account.id, client_id=client_id,
                redirect_uri=redirect_uri, scope=scope, challenge=challenge,
                challenge_method=method, expires_at=state.now() + CODE_TTL)
        params = {"code": code}
        if req.arg("state") is not None:
            params["state"] = req.arg("state") or ""
        if provider == "google":
            params["scope"] = scope
        sep = "&" if "?" in redirect_uri else "?"
        return Response(302, b"", {"Location": redirect_uri + sep + urlencode(params)})

    def _account_for_hint(self, provider: str, hint: str | None) -> Account:
        state = self.app.state
        if hint:
            found = state.account_by_email(provider, hint)
            if found:
                return found
            return state.create_account(provider, hint, [hint if provider == "google"
                                                         else "Calendar"])
        for acct in state.accounts.values():
            if acct.provider == provider:
                return acct
        email = "sandbox.user@example.com"
        return state.create_account(provider, email, [email if provider == "google"
                                                      else "Calendar"])

    # --- token ----------------------------------------------------------------------------

    def google_token(self, req: Request) -> Response:
        return self._token(req, "google")

    def ms_token(self, req: Request, tenant: str) -> Response:
        return self._token(req, "microsoft")

    def _token(self, req: Request, provider: str) -> Response:
        form = req.form()
        grant_type = form.get("grant_type")
        state = self.app.state
        with state.lock:
            if grant_type == "authorization_code":
                body = self._code_grant(form, provider)
            elif grant_type == "refresh_token":
                body = self._refresh_grant(form, provider)
            elif not grant_type:
                raise ApiError(400, "Missing required parameter: grant_type", "invalid_request")
            else:
                raise ApiError(400, f"Invalid grant_type: {grant_type}", "unsupported_grant_type")
        if provider == "microsoft":
            body["ext_expires_in"] = body["expires_in"]
        return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _invalid_grant(self, provider: str, message: str, ms_code: int = 70000) -> ApiError:
        if provider == "microsoft":
            return ApiError(400, f"AADSTS{ms_code}: {message}", "invalid_grant",
                            extra={"error_codes": [ms_code], "trace_id": util.guid(),
                                   "correlation_id": util.guid()})
        return ApiError(400, message, "invalid_grant")

    def _code_grant(self, form: dict[str, str], provider: str) -> dict[str, object]:
        state = self.app.state
        code = state.auth_codes.get(form.get("code", ""))
        if code is None or code.provider != provider:
            raise self._invalid_grant(provider, "Malformed auth code.")
        if code.used or state.now() >= code.expires_at:
            raise self._invalid_grant(provider, "The authorization code has expired or "
                                                "has already been redeemed.", 54005)
        if form.get("redirect_uri") != code.redirect_uri:
            raise self._invalid_grant(provider, "redirect_uri does not match the one used "
                                                "in the authorization request.", 50148)
        if form.get("client_id") and form["client_id"] != code.client_id:
            raise self._invalid_grant(provider, "client_id does not match the one used in "
                                                "the authorization request.", 700005)
        if not _pkce_ok(code, form.get("code_verifier")):
            msg = "Invalid code verifier." if form.get("code_verifier") else \
                "Missing code verifier."
            raise self._invalid_grant(provider, msg, 501481)
        code.used = True
        account = state.accounts[code.account_id]
        return issue_tokens(self.app, account, code.client_id, code.scope)

    def _refresh_grant(self, form: dict[str, str], provider: str) -> dict[str, object]:
        state = self.app.state
        token = form.get("refresh_token", "")
        grant = state.refresh_tokens.get(token)
        if grant is None or grant.provider != provider:
            if provider == "microsoft" and token in state.rotated_refresh_tokens:
                raise self._invalid_grant(provider, "The provided grant has already been "
                                                    "redeemed; use the newest refresh token.")
            if provider == "microsoft":
                raise self._invalid_grant(provider, "The refresh token has expired or been "
                                                    "revoked.", 50173)
            raise self._invalid_grant(provider, "Token has been expired or revoked.")
        account = state.accounts[grant.account_id]
        scope = form.get("scope") or grant.scope
        if provider == "microsoft":
            # Rotation: the token just used is spent.
            del state.refresh_tokens[token]
            state.rotated_refresh_tokens.add(token)
            return issue_tokens(self.app, account, grant.client_id, scope, refresh=True)
        return issue_tokens(self.app, account, grant.client_id, grant.scope, refresh=False)

    def google_revoke(self, req: Request) -> Response:
        token = req.arg("token") or req.form().get("token", "")
        state = self.app.state
        with state.lock:
            grant = state.refresh_tokens.get(token) or state.access_tokens.get(token)
            if grant is None:
                raise ApiError(400, "Token expired or revoked", "invalid_token")
            # Google revokes the whole grant; per account is close enough here.
            state.revoke_account(grant.account_id)
        return json_response({})
