"""validate_deployment under production settings refuses what would break in production."""

from __future__ import annotations

import pytest

from apps.monitoring.services import validation


@pytest.fixture
def production(settings, monkeypatch):
    settings.PRODUCTION = True
    settings.DEBUG = False
    settings.WEBHOOK_BASE_URL = "https://sync.example.com"
    monkeypatch.setenv("WEBHOOK_BASE_URL", "https://sync.example.com")
    settings.FIELD_ENCRYPTION_KEY = ["0" * 43 + "="]
    settings.GOOGLE_CLIENT_ID = "123.apps.googleusercontent.com"
    settings.MS_CLIENT_ID = "0d1f-real"
    settings.METRICS_TOKEN = "s3cret"
    return settings


def test_a_complete_production_configuration_passes(production):
    for check in (validation._base_url, validation._encryption_keys,
                  validation._oauth_clients, validation._metrics_token):
        assert check().ok, check()


def test_a_missing_base_url_is_named(production, monkeypatch):
    monkeypatch.delenv("WEBHOOK_BASE_URL")
    production.WEBHOOK_BASE_URL = "http://127.0.0.1:8000"
    check = validation._base_url()
    assert check.fails and "WEBHOOK_BASE_URL is not set" in check.detail


def test_plain_http_fails_even_on_loopback(production, monkeypatch):
    monkeypatch.setenv("WEBHOOK_BASE_URL", "http://127.0.0.1:8000")
    production.WEBHOOK_BASE_URL = "http://127.0.0.1:8000"
    check = validation._base_url()
    assert check.fails and "http://127.0.0.1:8000" in check.detail


def test_a_malformed_fernet_key_is_named_by_position(production):
    production.FIELD_ENCRYPTION_KEY = ["0" * 43 + "=", "not-a-key"]
    check = validation._encryption_keys()
    assert check.fails and "key(s) 2 of FIELD_ENCRYPTION_KEY" in check.detail


def test_the_development_oauth_client_is_refused(production):
    production.MS_CLIENT_ID = validation.DEVELOPMENT_CLIENT_ID
    check = validation._oauth_clients()
    assert check.fails and check.detail.startswith("MS_CLIENT_ID")


def test_a_missing_metrics_token_fails_in_production_only(production):
    production.METRICS_TOKEN = ""
    check = validation._metrics_token()
    assert check.fails and "METRICS_TOKEN" in check.detail
    production.PRODUCTION = False
    assert not validation._metrics_token().fails
