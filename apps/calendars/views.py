"""OAuth authorization-code flow for a signed-in user (thin: the work is in services).

``connect`` keeps a fresh ``state`` and PKCE verifier in the session and sends the user to the
provider; ``callback`` checks the state in constant time (single use), then hands the code to
``complete_authorization``. Anything wrong (state, provider error, refused code) is a 400 page.
"""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.calendars.providers import oauth
from apps.calendars.providers.errors import ProviderError
from apps.calendars.services.accounts import AccountConflict, complete_authorization

log = logging.getLogger(__name__)
_LABEL = {"google": "Google", "microsoft": "Microsoft"}


def _session_key(provider: str) -> str:
    return f"calendars.oauth.{provider}"


def _callback_url(provider: str) -> str:
    path = reverse("calendars:oauth-callback", kwargs={"provider": provider})
    # From configuration only, never the request's Host header: a forged Host would otherwise
    # send the provider's authorization code to another site.
    return f"{settings.OAUTH_REDIRECT_BASE_URL or settings.WEBHOOK_BASE_URL}{path}"


def _failure(request: HttpRequest, provider: str, reason: str) -> HttpResponse:
    return render(request, "calendars/oauth_error.html",
                  {"provider": _LABEL[provider], "reason": reason,
                   "retry_url": reverse("calendars:oauth-connect",
                                        kwargs={"provider": provider})}, status=400)


@login_required
@require_GET
def connect(request: HttpRequest, provider: str) -> HttpResponse:
    redirect_uri = _callback_url(provider)
    auth = oauth.build_authorization(provider, redirect_uri,
                                     login_hint=request.GET.get("login_hint", "")[:254])
    request.session[_session_key(provider)] = {
        "state": auth.state, "verifier": auth.code_verifier, "redirect_uri": redirect_uri}
    return HttpResponseRedirect(auth.url)


@login_required
@require_GET
def callback(request: HttpRequest, provider: str) -> HttpResponse:
    pending = request.session.pop(_session_key(provider), None)  # single use
    if request.GET.get("error"):
        return _failure(request, provider, "Access was not granted "
                        f"({request.GET['error'][:64]}).")
    state = request.GET.get("state", "")
    expected = pending.get("state", "") if isinstance(pending, dict) else ""
    if not state or not expected or not hmac.compare_digest(state.encode(), expected.encode()):
        return _failure(request, provider, "This sign-in did not start here or has already "
                                           "been used.")
    code = request.GET.get("code", "")
    if not code:
        return _failure(request, provider, "The provider sent no authorization code.")
    try:
        account = complete_authorization(request.user, provider, code, pending["verifier"],
                                         pending["redirect_uri"])
    except AccountConflict:
        return _failure(request, provider, "This mailbox is already connected by another user.")
    except ProviderError as exc:
        log.warning("oauth callback for %s failed: %s", provider, exc.kind)
        return _failure(request, provider, f"{_LABEL[provider]} refused the connection "
                                           f"({exc.kind.replace('_', ' ')}).")
    calendars = account.calendars.filter(sync_enabled=True).order_by("name")
    return render(request, "calendars/connected.html",
                  {"provider": _LABEL[provider], "account": account, "calendars": calendars})
