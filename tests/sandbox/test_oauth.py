"""OAuth: code flow with PKCE, refresh behaviour per provider, revocation, token expiry."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

from tests.support.sandbox_http import Api

REDIRECT = "http://127.0.0.1:8000/accounts/google/callback/"
VERIFIER = "v" * 50


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _authorize(admin: Api, path: str = "/o/oauth2/v2/auth", **extra: str) -> dict[str, str]:
    params = {"client_id": "cid", "redirect_uri": REDIRECT, "response_type": "code",
              "scope": "https://www.googleapis.com/auth/calendar", "state": "xyz",
              "access_type": "offline", "code_challenge": _challenge(VERIFIER),
              "code_challenge_method": "S256", "login_hint": "carol@example.com", **extra}
    resp = admin.get(path, params=params)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _exchange(admin: Api, code: str, path: str = "/token", **extra: str):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": "cid", "client_secret": "secret", "code_verifier": VERIFIER, **extra}
    return admin.post(path, data=form)


def test_it_runs_the_google_code_flow_with_pkce(admin: Api) -> None:
    query = _authorize(admin)
    assert query["state"] == "xyz"
    resp = _exchange(admin, query["code"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    assert body["refresh_token"] and body["access_token"]
    assert body["scope"] == "https://www.googleapis.com/auth/calendar"
    cals = Api(admin.base_url, body["access_token"]).get("/calendar/v3/users/me/calendarList")
    assert cals.json()["items"][0]["id"] == "carol@example.com"


def test_it_refuses_a_code_twice(admin: Api) -> None:
    code = _authorize(admin)["code"]
    assert _exchange(admin, code).status_code == 200
    again = _exchange(admin, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_it_refuses_a_wrong_or_missing_pkce_verifier(admin: Api) -> None:
    wrong = _exchange(admin, _authorize(admin)["code"], code_verifier="w" * 50)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    missing = _exchange(admin, _authorize(admin)["code"], code_verifier="")
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_grant"


def test_it_refuses_a_different_redirect_uri(admin: Api) -> None:
    resp = _exchange(admin, _authorize(admin)["code"], redirect_uri=REDIRECT + "other/")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"


def test_google_refresh_keeps_the_same_refresh_token(admin: Api) -> None:
    rt = admin.account("google", "dan@example.com")["refresh_token"]
    for _ in range(2):
        resp = admin.post("/token", data={"grant_type": "refresh_token", "refresh_token": rt,
                                          "client_id": "cid", "client_secret": "s"})
        assert resp.status_code == 200
        assert "refresh_token" not in resp.json()
        assert resp.json()["access_token"].startswith("ya29.")


def test_microsoft_refresh_rotates_and_the_old_token_dies(admin: Api) -> None:
    rt = admin.account("microsoft", "erin@example.com")["refresh_token"]
    path = "/common/oauth2/v2.0/token"
    first = admin.post(path, data={"grant_type": "refresh_token", "refresh_token": rt,
                                   "client_id": "cid", "scope": "offline_access Calendars.Read"})
    assert first.status_code == 200
    new_rt = first.json()["refresh_token"]
    assert new_rt != rt
    assert first.json()["ext_expires_in"] == first.json()["expires_in"]
    reused = admin.post(path, data={"grant_type": "refresh_token", "refresh_token": rt})
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert reused.json()["error_description"].startswith("AADSTS70000")
    assert admin.post(path, data={"grant_type": "refresh_token",
                                  "refresh_token": new_rt}).status_code == 200


def test_microsoft_authorize_works_for_any_tenant(admin: Api) -> None:
    query = _authorize(admin, "/organizations/oauth2/v2.0/authorize",
                       login_hint="frank@example.com")
    assert "scope" not in query
    resp = _exchange(admin, query["code"], path="/organizations/oauth2/v2.0/token")
    assert resp.status_code == 200
    token = resp.json()["access_token"]
    cals = Api(admin.base_url, token).get("/v1.0/me/calendars").json()["value"]
    assert cals[0]["isDefaultCalendar"] is True
    # A Google code is not a Microsoft one.
    assert _exchange(admin, _authorize(admin)["code"],
                     path="/common/oauth2/v2.0/token").json()["error"] == "invalid_grant"


def test_revoked_accounts_get_invalid_grant_and_401(admin: Api) -> None:
    acct = admin.account("google", "gina@example.com")
    ms = admin.account("microsoft", "gina@example.com")
    admin.faults(revoke=["gina@example.com"])
    resp = admin.post("/token", data={"grant_type": "refresh_token",
                                      "refresh_token": acct["refresh_token"]})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"
    api = Api(admin.base_url, acct["access_token"])
    assert api.get("/calendar/v3/users/me/calendarList").status_code == 401
    resp = admin.post("/common/oauth2/v2.0/token",
                      data={"grant_type": "refresh_token", "refresh_token": ms["refresh_token"]})
    assert resp.json()["error"] == "invalid_grant"
    # Re-connecting gives working tokens again.
    fresh = admin.account("google", "gina@example.com")
    assert fresh["created"] is False
    assert Api(admin.base_url, fresh["access_token"]).get(
        "/calendar/v3/users/me/calendarList").status_code == 200


def test_access_tokens_expire_on_the_virtual_clock(admin: Api) -> None:
    admin.faults(access_token_ttl_seconds=60)
    g = admin.account("google", "hal@example.com")
    m = admin.account("microsoft", "hal@example.com")
    gapi, mapi = Api(admin.base_url, g["access_token"]), Api(admin.base_url, m["access_token"])
    assert gapi.get("/calendar/v3/users/me/calendarList").status_code == 200
    assert admin.post("/_sandbox/clock", json={"advance_seconds": 61}).status_code == 200
    resp = gapi.get("/calendar/v3/users/me/calendarList")
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert error["code"] == 401 and error["message"] == "Invalid Credentials"
    assert error["errors"][0]["reason"] == "authError"
    resp = mapi.get("/v1.0/me/calendars")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_a_google_token_is_refused_by_graph(google) -> None:
    api, _ = google
    assert api.get("/v1.0/me/calendars").status_code == 401


def test_it_refuses_unknown_grant_types(admin: Api) -> None:
    resp = admin.post("/token", data={"grant_type": "password"})
    assert resp.status_code == 400
    assert resp.json()["error"] == "unsupported_grant_type"


def test_a_second_account_call_adds_a_refresh_token(admin: Api) -> None:
    first = admin.account("google", "ivy@example.com", calendars=["Work", "Home"])
    second = admin.account("google", "ivy@example.com")
    assert second["refresh_token"] != first["refresh_token"]
    assert second["calendars"] == first["calendars"]
    assert [c["name"] for c in first["calendars"]] == ["Work", "Home"]
    for rt in (first["refresh_token"], second["refresh_token"]):
        assert admin.post("/token", data={"grant_type": "refresh_token",
                                          "refresh_token": rt}).status_code == 200
