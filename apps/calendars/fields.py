"""Encrypted model fields for OAuth tokens (Fernet, with key rotation through MultiFernet).

``FIELD_ENCRYPTION_KEY`` holds one or more Fernet keys: the first encrypts, every key decrypts,
so a key is rotated by prepending a new one, re-saving rows, then removing the old one.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@lru_cache(maxsize=8)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY is not set")
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY holds a malformed Fernet key") from None


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.FIELD_ENCRYPTION_KEY))


class Undecryptable(str):
    """What a stored value that no configured key decrypts reads as: an empty string (no
    usable token) that says so, so the model can act on it (``CalendarAccount.from_db``)
    instead of every query that loads the row raising. It keeps the stored text: saving the
    row writes it back unchanged, so a host with a wrong key never destroys tokens that the
    right key still opens."""

    ciphertext: str

    def __new__(cls, ciphertext: str) -> Undecryptable:
        value = super().__new__(cls, "")
        value.ciphertext = ciphertext
        return value


class EncryptedTextField(models.TextField):
    """Stores ``Fernet(value)``; reads back the plain text. Empty stays empty."""

    def get_prep_value(self, value: str | None) -> str | None:
        if isinstance(value, Undecryptable):
            return value.ciphertext
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return fernet().encrypt(value.encode()).decode()

    def from_db_value(self, value: str | None, expression, connection) -> str | None:
        if value in (None, ""):
            return value
        try:
            return fernet().decrypt(value.encode()).decode()
        except InvalidToken:
            return Undecryptable(value)
