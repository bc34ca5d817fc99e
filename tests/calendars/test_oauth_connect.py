"""The OAuth connect flow end to end: Django's test client for our side, the sandbox as the
provider's authorize and token endpoints."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from apps.calendars.models import CalendarAccount
from apps.calendars.services.accounts import mark_reauth_required

pytestmark = pytest.mark.django_db


def _start(client, provider: str, email: str):
    response = client.get(f"/accounts/{provider}/connect/", {"login_hint": email})
    assert response.status_code == 302
    return response["Location"]


def _authorize(url: str) -> dict[str, str]:
    """Play the browser at the provider: the sandbox approves and redirects back."""
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path.endswith("/callback/")
    return {k: v[0] for k, v in parse_qs(back.query).items()}


@pytest.mark.parametrize("provider,calendars", [
    ("google", ["Work", "Home"]),
    ("microsoft", ["Calendar", "Projects"]),
])
def test_a_signed_in_user_connects_an_account_end_to_end(client, user, sandbox, sandbox_admin,
                                                         provider, calendars, settings):
    email = f"{provider}.carol@example.com"
    sandbox_admin.account(provider, email, calendars)
    client.force_login(user)
    location = _start(client, provider, email)
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(sandbox.url)
    assert query["code_challenge_method"] == ["S256"] and query["state"][0]
    assert query["redirect_uri"] == [f"{settings.WEBHOOK_BASE_URL}/accounts/{provider}/callback/"]

    params = _authorize(location)
    response = client.get(f"/accounts/{provider}/callback/", params)

    assert response.status_code == 200
    account = CalendarAccount.objects.get(provider=provider, email=email)
    assert account.user == user and account.status == "active"
    assert account.refresh_token and account.access_token
    assert sorted(account.calendars.values_list("name", flat=True)) == sorted(calendars)
    for name in calendars:
        assert name in response.content.decode()


def test_the_challenge_is_the_s256_of_the_verifier_kept_in_the_session(client, user, sandbox):
    client.force_login(user)
    location = _start(client, "google", "dave@example.com")
    challenge = parse_qs(urlsplit(location).query)["code_challenge"][0]
    verifier = client.session["calendars.oauth.google"]["verifier"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert challenge == digest.decode() and 43 <= len(verifier) <= 128


def test_connect_requires_a_signed_in_user(client, sandbox):
    response = client.get("/accounts/google/connect/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_an_unknown_provider_is_404(client, user):
    client.force_login(user)
    assert client.get("/accounts/yahoo/connect/").status_code == 404


def test_a_forged_state_is_refused_and_connects_nothing(client, user, sandbox):
    client.force_login(user)
    params = _authorize(_start(client, "google", "erin@example.com"))
    params["state"] = "forged" + params["state"][6:]
    response = client.get("/accounts/google/callback/", params)
    assert response.status_code == 400
    assert not CalendarAccount.objects.exists()


def test_a_callback_without_a_pending_sign_in_is_refused(client, user, sandbox):
    client.force_login(user)
    response = client.get("/accounts/microsoft/callback/", {"code": "c", "state": "s"})
    assert response.status_code == 400


def test_the_state_is_single_use(client, user, sandbox):
    client.force_login(user)
    params = _authorize(_start(client, "google", "fay@example.com"))
    assert client.get("/accounts/google/callback/", params).status_code == 200
    assert client.get("/accounts/google/callback/", params).status_code == 400


def test_an_error_from_the_provider_is_a_400_page(client, user, sandbox):
    client.force_login(user)
    _start(client, "microsoft", "gus@example.com")
    response = client.get("/accounts/microsoft/callback/",
                          {"error": "access_denied", "error_description": "User declined"})
    assert response.status_code == 400
    assert b"access_denied" in response.content


def test_a_code_the_provider_refuses_is_a_400_page(client, user, sandbox):
    client.force_login(user)
    params = _authorize(_start(client, "google", "hal@example.com"))
    params["code"] = "4/0A-not-the-code"
    response = client.get("/accounts/google/callback/", params)
    assert response.status_code == 400
    assert not CalendarAccount.objects.exists()


def test_a_provider_outage_during_the_exchange_is_a_400_page(client, user, sandbox,
                                                             sandbox_admin):
    client.force_login(user)
    params = _authorize(_start(client, "microsoft", "ivy@example.com"))
    sandbox_admin.faults(fail_next={"oauth.token": [503]})
    response = client.get("/accounts/microsoft/callback/", params)
    assert response.status_code == 400


def test_reconnecting_a_reauth_required_account_makes_it_active(client, user, sandbox,
                                                                sandbox_admin):
    client.force_login(user)
    assert client.get("/accounts/google/callback/",
                      _authorize(_start(client, "google", "jo@example.com"))).status_code == 200
    account = CalendarAccount.objects.get(email="jo@example.com")
    sandbox_admin.faults(revoke=["jo@example.com"])
    mark_reauth_required(account, "refresh token rejected (invalid_grant)")
    assert CalendarAccount.objects.get(pk=account.pk).status == "reauth_required"

    params = _authorize(_start(client, "google", "jo@example.com"))
    assert client.get("/accounts/google/callback/", params).status_code == 200
    again = CalendarAccount.objects.get(pk=account.pk)
    assert again.status == "active" and again.last_error == "" and again.refresh_token
    assert CalendarAccount.objects.count() == 1


def test_a_mailbox_connected_by_another_user_is_refused(client, user, sandbox,
                                                        django_user_model):
    client.force_login(user)
    client.get("/accounts/google/callback/", _authorize(_start(client, "google", "kim@x.org")))
    other = django_user_model.objects.create_user("mallory", "m@example.com", "pw")
    client.force_login(other)
    response = client.get("/accounts/google/callback/",
                          _authorize(_start(client, "google", "kim@x.org")))
    assert response.status_code == 400
    assert CalendarAccount.objects.get(email="kim@x.org").user == user


@pytest.mark.parametrize("configured", ["OAUTH_REDIRECT_BASE_URL", "WEBHOOK_BASE_URL"])
def test_the_redirect_uri_never_comes_from_the_host_header(client, user, sandbox, settings,
                                                          configured):
    settings.ALLOWED_HOSTS = ["*"]  # even where the host list is wide open
    settings.OAUTH_REDIRECT_BASE_URL = ""
    setattr(settings, configured, "https://sync.example.com")
    client.force_login(user)
    response = client.get("/accounts/google/connect/", HTTP_HOST="attacker.example")
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["redirect_uri"] == ["https://sync.example.com/accounts/google/callback/"]
