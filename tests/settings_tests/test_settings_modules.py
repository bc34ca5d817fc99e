"""Settings modules behave as operators expect: phases apply, production demands secrets."""

import json
import os
from pathlib import Path

import pytest

from tests.support.processes import ROOT, run_settings

PROBE = (
    "import django, json; from django.conf import settings; django.setup(); "
    "print(json.dumps({k: getattr(settings, k) for k in ("
    "'WEBHOOKS_ENABLED','WEBHOOK_ROLLOUT_PERCENTAGE','WEBHOOK_USER_ROLLOUT_PERCENTAGE',"
    "'WEBHOOK_EARLY_ADOPTERS','WEBHOOK_DEPLOYMENT_PHASE')}))"
)


@pytest.fixture(autouse=True)
def _var_dir(tmp_path, monkeypatch):
    """The development SQLite file and the logs go to this test's directory."""
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "log"))


@pytest.mark.parametrize(
    "phase, rollout, user_rollout",
    [("1", 0, 0), ("2", 0, 0), ("3", 100, 10), ("4", 100, 75), ("5", 100, 100)],
)
def test_each_deployment_phase_applies_its_rollout(phase, rollout, user_rollout):
    out = run_settings("settings.development", "-c", PROBE, WEBHOOK_DEPLOYMENT_PHASE=phase,
                       WEBHOOK_EARLY_ADOPTERS="Ann@Example.com")
    assert out.returncode == 0, out.stderr
    values = json.loads(out.stdout)
    assert values["WEBHOOK_DEPLOYMENT_PHASE"] == int(phase)
    assert values["WEBHOOK_ROLLOUT_PERCENTAGE"] == rollout
    assert values["WEBHOOK_USER_ROLLOUT_PERCENTAGE"] == user_rollout
    assert values["WEBHOOK_EARLY_ADOPTERS"] == ([] if phase == "1" else ["ann@example.com"])


def test_a_malformed_value_stops_start_up_and_names_the_variable():
    out = run_settings("settings.development", "-c", PROBE, WEBHOOK_ROLLOUT_PERCENTAGE="ten")
    assert out.returncode != 0
    assert "WEBHOOK_ROLLOUT_PERCENTAGE" in out.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEY"])
def test_production_refuses_to_start_without_its_secrets(missing):
    env = {"SECRET_KEY": "s" * 60, "FIELD_ENCRYPTION_KEY": "k" * 44}
    env.pop(missing)
    out = run_settings("settings.production", "-c", PROBE, **env)
    assert out.returncode != 0
    assert missing in out.stderr


def test_production_passes_the_deploy_check_when_configured():
    import secrets

    from cryptography.fernet import Fernet

    env = {"SECRET_KEY": secrets.token_urlsafe(50),
           "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
           "ALLOWED_HOSTS": "sync.example.com", "METRICS_TOKEN": secrets.token_hex(24)}
    out = run_settings("settings.production", "manage.py", "check", "--deploy",
                       "--fail-level", "WARNING", **env)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_suite_keeps_its_files_out_of_the_checkout(settings):
    # A fresh clone has no var/; the suite must neither need it nor create it.
    for where in (Path(settings.VAR_DIR), Path(settings.LOG_DIR), Path(os.environ["VAR_DIR"])):
        assert not where.resolve().is_relative_to(ROOT), where
