"""Production never exposes by omission: /metrics without a token and a wildcard host list are
start-up errors unless set on purpose."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet

from tests.support.processes import run_settings

PROBE = ("import django, json; from django.conf import settings; django.setup(); "
         "print(json.dumps({'hosts': settings.ALLOWED_HOSTS}))")


def production_env(**extra: str) -> dict[str, str]:
    env = {"SECRET_KEY": "s" * 60, "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
           "ALLOWED_HOSTS": "sync.example.com", "METRICS_TOKEN": "m" * 48}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


@pytest.mark.parametrize("extra", [{"METRICS_TOKEN": ""}, {"METRICS_TOKEN": "",
                                                           "METRICS_PUBLIC": "false"}])
def test_an_anonymous_metrics_endpoint_stops_production_start_up(extra):
    out = run_settings("settings.production", "-c", PROBE, **production_env(**extra))
    assert out.returncode != 0
    assert "METRICS_TOKEN" in out.stderr


def test_an_anonymous_metrics_endpoint_is_allowed_when_declared_public():
    out = run_settings("settings.production", "-c", PROBE,
                       **production_env(METRICS_TOKEN="", METRICS_PUBLIC="true"))
    assert out.returncode == 0, out.stderr


def test_production_has_no_wildcard_host_default():
    out = run_settings("settings.production", "-c", PROBE, **production_env(ALLOWED_HOSTS=""))
    assert out.returncode != 0
    assert "ALLOWED_HOSTS" in out.stderr
    out = run_settings("settings.production", "-c", PROBE, **production_env())
    assert json.loads(out.stdout)["hosts"] == ["sync.example.com"]
