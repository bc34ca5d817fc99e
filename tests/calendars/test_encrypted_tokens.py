"""OAuth tokens are encrypted at rest, readable through the model, and keys rotate."""

import base64
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from apps.calendars.models import Calendar, CalendarAccount

pytestmark = pytest.mark.django_db


def _raw_tokens(account_id: int) -> tuple[str, str]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT access_token, refresh_token FROM calendars_calendaraccount WHERE id = %s",
            [account_id],
        )
        return cur.fetchone()


def test_tokens_round_trip_through_the_model(google_account):
    fresh = CalendarAccount.objects.get(pk=google_account.pk)
    assert fresh.access_token == "ya29.access"
    assert fresh.refresh_token == "1//refresh"


def test_tokens_are_unreadable_in_the_raw_table(google_account):
    access, refresh = _raw_tokens(google_account.pk)
    assert "ya29.access" not in access and "1//refresh" not in refresh
    # Fernet tokens are url-safe base64 starting with the version byte 0x80.
    assert base64.urlsafe_b64decode(access)[0] == 0x80


def test_a_rotated_key_still_reads_old_rows_and_writes_with_the_new_one(google_account, settings):
    old_key = settings.FIELD_ENCRYPTION_KEY[0]
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = [new_key, old_key]
    account = CalendarAccount.objects.get(pk=google_account.pk)
    assert account.refresh_token == "1//refresh"
    account.save()
    settings.FIELD_ENCRYPTION_KEY = [new_key]
    assert CalendarAccount.objects.get(pk=google_account.pk).refresh_token == "1//refresh"


def test_a_token_no_key_decrypts_marks_the_account_for_reconnection(google_calendar, settings,
                                                                     caplog):
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]

    # Loaded along with its calendar, as the sync engine does: no exception.
    calendar = Calendar.objects.select_related("calendar_account").get(pk=google_calendar.pk)

    assert calendar.calendar_account.status == "reauth_required"
    assert calendar.calendar_account.refresh_token == ""
    assert "cannot be decrypted" in caplog.text and "1//refresh" not in caplog.text
    again = CalendarAccount.objects.get(pk=calendar.calendar_account.pk)
    assert again.status == "reauth_required" and "cannot be decrypted" in again.last_error
    assert caplog.text.count("cannot be decrypted") == 1  # said once, not on every load


def test_a_host_with_a_wrong_key_never_destroys_the_stored_tokens(google_account, settings):
    right_key = settings.FIELD_ENCRYPTION_KEY
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]
    account = CalendarAccount.objects.get(pk=google_account.pk)
    account.save()  # e.g. an admin edit on the misconfigured host

    settings.FIELD_ENCRYPTION_KEY = right_key
    restored = CalendarAccount.objects.get(pk=google_account.pk)
    assert (restored.access_token, restored.refresh_token) == ("ya29.access", "1//refresh")
    assert restored.status == "reauth_required"  # the user is asked once; the tokens survive


def test_rotation_re_encrypts_every_token_so_the_old_key_can_go(google_account, settings):
    old_key = settings.FIELD_ENCRYPTION_KEY[0]
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = [new_key, old_key]

    out = StringIO()
    call_command("rotate_encryption_key", stdout=out)

    assert "1 accounts re-encrypted" in out.getvalue()
    settings.FIELD_ENCRYPTION_KEY = [new_key]
    account = CalendarAccount.objects.get(pk=google_account.pk)
    assert (account.access_token, account.refresh_token) == ("ya29.access", "1//refresh")
    assert account.status == "active"


def test_emails_are_unique_whatever_their_case(google_account):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        CalendarAccount.objects.create(user=google_account.user, provider="google",
                                       email=google_account.email.upper())
