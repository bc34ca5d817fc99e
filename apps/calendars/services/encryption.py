"""Key rotation for the OAuth tokens at rest (``FIELD_ENCRYPTION_KEY``: the first key
encrypts, every key decrypts).

Rotation: prepend a new key, run ``rotate_encryption_key`` (every stored token re-encrypted
with the first key), then remove the old key. A token no key decrypts cannot be rotated: its
account is marked ``reauth_required`` when loaded (``CalendarAccount.from_db``) and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from apps.calendars.models import CalendarAccount

BATCH_SIZE = 500


@dataclass
class RotationSummary:
    rotated: int = 0  # accounts whose tokens are now encrypted with the first key
    unreadable: int = 0  # accounts whose tokens no key decrypts (now reauth_required)


def rotate_tokens() -> RotationSummary:
    """Re-encrypt every stored token with the first configured key."""
    summary = RotationSummary()
    accounts = CalendarAccount.objects.exclude(access_token="", refresh_token="").order_by("pk")
    for account in accounts.only("pk", "provider", "status", "last_error", "access_token",
                                 "refresh_token").iterator(chunk_size=BATCH_SIZE):
        if not account.access_token and not account.refresh_token:
            summary.unreadable += 1  # no key opens them: left as stored, account flagged
            continue
        with transaction.atomic():
            # Written through the field, which encrypts with the first key.
            CalendarAccount.objects.filter(pk=account.pk).update(
                access_token=account.access_token, refresh_token=account.refresh_token)
        summary.rotated += 1
    return summary
