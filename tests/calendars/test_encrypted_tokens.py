"""OAuth tokens are encrypted at rest, readable through the model, and keys rotate."""

import base64

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from apps.calendars.fields import DecryptionFailed
from apps.calendars.models import CalendarAccount

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


def test_a_missing_key_is_an_explicit_error_not_garbage(google_account, settings):
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]
    with pytest.raises(DecryptionFailed):
        CalendarAccount.objects.get(pk=google_account.pk)
