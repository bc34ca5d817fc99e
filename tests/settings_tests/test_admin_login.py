"""Admin login: failed attempts are throttled per client address and per username, with a
lockout; passwords are checked against Django's validators."""

from __future__ import annotations

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)


def attempt(client, username: str, password: str, address: str):
    return client.post(LOGIN, {"username": username, "password": password},
                       REMOTE_ADDR=address)


def test_an_address_is_locked_out_after_repeated_failures(client, admin_user, settings):
    limit = settings.AXES_FAILURE_LIMIT
    codes = [attempt(client, f"guess{n}", "wrong", "198.51.100.1").status_code
             for n in range(limit)]
    assert codes == [200] * (limit - 1) + [429]  # the form again, then locked out
    locked = attempt(client, "root", PASSWORD, "198.51.100.1")
    assert locked.status_code == 429
    assert attempt(client, "root", PASSWORD, "203.0.113.2").status_code == 302


def test_a_username_is_locked_out_whatever_the_address(client, admin_user, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "root", "wrong", f"198.51.100.{n + 1}")
    assert attempt(client, "root", PASSWORD, "203.0.113.2").status_code == 429


def test_weak_passwords_are_refused(admin_user):
    for weak in ("password123", "12345678901234", "short1!"):
        with pytest.raises(ValidationError):
            validate_password(weak, admin_user)
    validate_password("a sentence nobody guesses 7", admin_user)
