"""Settings modules behave as operators expect: phases apply, production demands secrets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


def _run(module: str, extra_env: dict[str, str], code: str = PROBE, *args: str):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WEBHOOK_", "SECRET_KEY", "FIELD_ENCRYPTION_KEY"))}
    env.update({"DJANGO_SETTINGS_MODULE": module, **extra_env})
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "manage.py", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "phase, rollout, user_rollout",
    [("1", 0, 0), ("2", 0, 0), ("3", 100, 10), ("4", 100, 75), ("5", 100, 100)],
)
def test_each_deployment_phase_applies_its_rollout(phase, rollout, user_rollout):
    out = _run("settings.development",
               {"WEBHOOK_DEPLOYMENT_PHASE": phase, "WEBHOOK_EARLY_ADOPTERS": "Ann@Example.com"})
    assert out.returncode == 0, out.stderr
    values = json.loads(out.stdout)
    assert values["WEBHOOK_DEPLOYMENT_PHASE"] == int(phase)
    assert values["WEBHOOK_ROLLOUT_PERCENTAGE"] == rollout
    assert values["WEBHOOK_USER_ROLLOUT_PERCENTAGE"] == user_rollout
    assert values["WEBHOOK_EARLY_ADOPTERS"] == ([] if phase == "1" else ["ann@example.com"])


def test_a_malformed_value_stops_start_up_and_names_the_variable():
    out = _run("settings.development", {"WEBHOOK_ROLLOUT_PERCENTAGE": "ten"})
    assert out.returncode != 0
    assert "WEBHOOK_ROLLOUT_PERCENTAGE" in out.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEY"])
def test_production_refuses_to_start_without_its_secrets(missing):
    env = {"SECRET_KEY": "s" * 60, "FIELD_ENCRYPTION_KEY": "k" * 44}
    env.pop(missing)
    out = _run("settings.production", env)
    assert out.returncode != 0
    assert missing in out.stderr


def test_production_passes_the_deploy_check_when_configured():
    import secrets

    from cryptography.fernet import Fernet

    env = {"SECRET_KEY": secrets.token_urlsafe(50),
           "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
           "ALLOWED_HOSTS": "sync.example.com", "METRICS_TOKEN": secrets.token_hex(24)}
    out = _run("settings.production", env, "", "check", "--deploy",
               "--fail-level", "WARNING")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_suite_keeps_its_files_out_of_the_checkout(settings):
    # A fresh clone has no var/; the suite must neither need it nor create it.
    for where in (Path(settings.VAR_DIR), Path(settings.LOG_DIR), Path(os.environ["VAR_DIR"])):
        assert not where.resolve().is_relative_to(ROOT), where
