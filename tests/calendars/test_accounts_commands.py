"""connect_account / seed_demo commands and the account services behind them."""

from __future__ import annotations

import io
import socket
import sys

import pytest
from django.core.management import CommandError, call_command

from apps.calendars.models import Calendar, CalendarAccount
from apps.calendars.providers.base import RemoteCalendar
from apps.calendars.services.accounts import (
    CALENDAR_GONE,
    mark_reauth_required,
    sync_calendar_list,
)

pytestmark = pytest.mark.django_db


def _run(*args: str, stdin: str | None = None) -> str:
    out = io.StringIO()
    if stdin is not None:
        old, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            call_command(*args, stdout=out)
        finally:
            sys.stdin = old
    else:
        call_command(*args, stdout=out)
    return out.getvalue()


# --- connect_account ------------------------------------------------------------------------

def test_connect_account_connects_and_lists_the_calendars(sandbox_admin, user):
    token = sandbox_admin.account("google", "lee@example.com", ["Work", "Home"])["refresh_token"]
    out = _run("connect_account", "--provider", "google", "--email", "lee@example.com",
               "--refresh-token", token, "--user", "alice")
    account = CalendarAccount.objects.get(email="lee@example.com")
    assert account.user == user and account.status == "active"
    assert sorted(account.calendars.values_list("name", flat=True)) == ["Home", "Work"]
    assert "Home, Work" in out and token not in out


def test_connect_account_saves_microsofts_rotated_token_read_from_stdin(sandbox_admin):
    token = sandbox_admin.account("microsoft", "max@example.com")["refresh_token"]
    _run("connect_account", "--provider", "microsoft", "--email", "max@example.com",
         "--refresh-token", "-", stdin=token + "\n")
    account = CalendarAccount.objects.get(email="max@example.com")
    assert account.refresh_token and account.refresh_token != token  # rotated on first use
    assert account.user.username == "max@example.com"


def test_connect_account_refuses_a_revoked_token_and_creates_nothing(sandbox_admin, user):
    token = sandbox_admin.account("google", "ned@example.com")["refresh_token"]
    sandbox_admin.faults(revoke=["ned@example.com"])
    with pytest.raises(CommandError, match="invalid_grant") as caught:
        _run("connect_account", "--provider", "google", "--email", "ned@example.com",
             "--refresh-token", token, "--user", "alice")
    assert token not in str(caught.value)
    assert not CalendarAccount.objects.exists()


def test_a_refused_token_leaves_no_user_behind(sandbox_admin, django_user_model):
    token = sandbox_admin.account("google", "pam@example.com")["refresh_token"]
    sandbox_admin.faults(revoke=["pam@example.com"])
    with pytest.raises(CommandError, match="invalid_grant"):
        _run("connect_account", "--provider", "google", "--email", "pam@example.com",
             "--refresh-token", token)
    assert not django_user_model.objects.filter(username="pam@example.com").exists()
    assert not CalendarAccount.objects.exists()


def test_connect_account_names_an_unknown_user(sandbox):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        _run("connect_account", "--provider", "google", "--email", "a@b.c",
             "--refresh-token", "x", "--user", "nobody")


def test_connect_account_reactivates_a_reauth_required_account(sandbox_admin, connect):
    account, _ = connect("google", "oli@example.com")
    mark_reauth_required(account, "invalid_grant")
    token = sandbox_admin.account("google", "oli@example.com")["refresh_token"]
    _run("connect_account", "--provider", "google", "--email", "oli@example.com",
         "--refresh-token", token, "--user", "alice")
    account.refresh_from_db()
    assert account.status == "active" and account.last_error == ""


# --- seed_demo ------------------------------------------------------------------------------

def test_seed_demo_connects_two_google_and_one_microsoft_account(sandbox, sandbox_admin):
    out = _run("seed_demo")
    accounts = CalendarAccount.objects.filter(user__username="demo")
    assert sorted(accounts.values_list("provider", flat=True)) == \
        ["google", "google", "microsoft"]
    assert all(a.status == "active" and a.calendars.exists() for a in accounts)
    for account in accounts:
        assert account.email in out
    emails = {a["email"] for a in sandbox_admin.state()["accounts"]}
    assert set(accounts.values_list("email", flat=True)) <= emails


def test_seed_demo_twice_keeps_the_same_accounts_and_calendars(sandbox):
    _run("seed_demo")
    first = (sorted(CalendarAccount.objects.values_list("pk", flat=True)),
             sorted(Calendar.objects.values_list("pk", flat=True)))
    _run("seed_demo")
    again = (sorted(CalendarAccount.objects.values_list("pk", flat=True)),
             sorted(Calendar.objects.values_list("pk", flat=True)))
    assert first == again
    assert not Calendar.objects.filter(sync_enabled=False).exists()


def test_seed_demo_says_clearly_when_the_sandbox_is_not_running(settings, db):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        settings.SANDBOX_URL = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(CommandError, match="not reachable.*python -m sandbox"):
            _run("seed_demo")
    assert not CalendarAccount.objects.exists()


# --- services -------------------------------------------------------------------------------

def test_a_calendar_the_provider_stops_listing_stops_syncing_and_comes_back(google_account):
    work = RemoteCalendar(id="work", name="Work")
    home = RemoteCalendar(id="home", name="Home")
    sync_calendar_list(google_account, remote=[work, home])
    sync_calendar_list(google_account, remote=[RemoteCalendar(id="work", name="Job")])
    rows = {c.provider_calendar_id: c for c in google_account.calendars.all()}
    assert rows["work"].name == "Job" and rows["work"].sync_enabled
    assert not rows["home"].sync_enabled and rows["home"].last_sync_error == CALENDAR_GONE
    sync_calendar_list(google_account, remote=[work, home])
    assert google_account.calendars.get(provider_calendar_id="home").sync_enabled


def test_a_calendar_an_operator_disabled_stays_disabled(google_account):
    sync_calendar_list(google_account, remote=[RemoteCalendar(id="work", name="Work")])
    google_account.calendars.update(sync_enabled=False)
    sync_calendar_list(google_account, remote=[RemoteCalendar(id="work", name="Work")])
    assert not google_account.calendars.get().sync_enabled


def test_mark_reauth_required_drops_tokens_but_leaves_a_disabled_account_alone(google_account):
    assert mark_reauth_required(google_account, "invalid_grant") is True
    stored = CalendarAccount.objects.get(pk=google_account.pk)
    assert (stored.status, stored.access_token, stored.refresh_token, stored.last_error) == \
        ("reauth_required", "", "", "invalid_grant")
    stored.status = "disabled"
    stored.save()
    assert mark_reauth_required(stored, "invalid_grant") is False
    assert CalendarAccount.objects.get(pk=stored.pk).status == "disabled"
