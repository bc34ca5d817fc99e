"""A bad setting or an unreachable service is one line naming it, never a traceback."""

from __future__ import annotations

import json
import subprocess

import pytest

from bench.support import free_port
from tests.support.processes import run_settings


def run(*args: str, module: str = "settings.development", program: tuple = ("manage.py",),
        **extra: str) -> subprocess.CompletedProcess:
    return run_settings(module, *program, *args, **extra)


@pytest.mark.parametrize("variable, value, named", [
    ("WEBHOOK_DEPLOYMENT_PHASE", "6", "WEBHOOK_DEPLOYMENT_PHASE must be <= 5"),
    ("LOG_FORMAT", "yaml", "LOG_FORMAT must be one of text, json"),
    ("LOG_LEVEL", "verbose", "LOG_LEVEL must be one of"),
    ("WORKER_RETRY_BASE_SECONDS", "-1", "WORKER_RETRY_BASE_SECONDS must be a number >= 0"),
    ("WEBHOOK_TRUSTED_PROXIES", "nginx", "WEBHOOK_TRUSTED_PROXIES: 'nginx' is not an IP"),
])
def test_a_malformed_setting_is_one_line_and_a_non_zero_exit(variable, value, named):
    out = run("check", **{variable: value})
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert named in out.stderr and "Traceback" not in out.stderr


def test_a_missing_secret_key_in_production_is_one_line():
    out = run("check", module="settings.production", FIELD_ENCRYPTION_KEY="x")
    assert out.returncode == 1
    assert out.stderr.strip() == ("check: configuration error: SECRET_KEY must be set for "
                                  "this settings module")


def test_traceback_or_verbosity_3_still_show_the_detail():
    for flag in (("--traceback",), ("-v", "3")):
        out = run("check", *flag, LOG_FORMAT="yaml")
        assert out.returncode != 0 and "Traceback" in out.stderr


@pytest.mark.parametrize("command", [("poll_calendars", "--once"),
                                     ("cleanup_webhook_data", "--days=30"), ("migrate",)])
def test_a_database_that_is_down_is_named_with_its_host(command):
    port = free_port()
    out = run(*command, module="settings.test",
              DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/nothing_here")
    assert out.returncode == 1
    assert f"the database at 127.0.0.1:{port} is unreachable" in out.stderr
    assert "DATABASE_URL" in out.stderr and "Traceback" not in out.stderr


def test_a_health_check_that_cannot_start_exits_3():
    out = run("webhook_health_check", LOG_FORMAT="yaml")
    assert out.returncode == 3 and "LOG_FORMAT" in out.stderr


def test_the_health_check_help_lists_its_exit_codes():
    out = run("webhook_health_check", "--help")
    text = " ".join(out.stdout.split())
    assert "0 healthy, 1 degraded, 2 critical, 3 the check itself could not run" in text
    assert "--respond" in text


def test_gunicorn_refuses_a_malformed_worker_count_in_one_line():
    out = run("-c", "gunicorn.conf.py", "calendar_sync.wsgi:application",
              program=("-m", "gunicorn"), GUNICORN_WORKERS="abc",
              GUNICORN_BIND=f"127.0.0.1:{free_port()}")
    assert out.returncode != 0
    assert "GUNICORN_WORKERS must be an integer" in out.stderr
    assert "Traceback" not in out.stderr


def test_gunicorn_refuses_a_bad_django_setting_before_starting_workers():
    out = run("-c", "gunicorn.conf.py", "calendar_sync.wsgi:application",
              program=("-m", "gunicorn"), LOG_LEVEL="verbose",
              GUNICORN_BIND=f"127.0.0.1:{free_port()}")
    assert out.returncode != 0
    assert "LOG_LEVEL must be one of" in out.stderr and "Traceback" not in out.stderr


PROBE = ("import django, json; from django.conf import settings; django.setup(); "
         "print(json.dumps([settings.WEBHOOKS_ENABLED, settings.WEBHOOK_DEPLOYMENT_PHASE]))")


def test_webhooks_enabled_false_wins_over_the_phase():
    out = run("-c", PROBE, program=(), WEBHOOK_DEPLOYMENT_PHASE="1", WEBHOOKS_ENABLED="false")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [False, 1]


def test_a_rollout_percentage_contradicting_the_phase_is_refused():
    out = run("check", WEBHOOK_DEPLOYMENT_PHASE="4", WEBHOOK_USER_ROLLOUT_PERCENTAGE="10")
    assert out.returncode == 1
    assert ("WEBHOOK_USER_ROLLOUT_PERCENTAGE=10 conflicts with WEBHOOK_DEPLOYMENT_PHASE=4"
            in out.stderr)


def test_an_unreachable_cache_is_named_with_its_host():
    port = free_port()
    out = run("shell", "-c", "from django.core.cache import cache; cache.get('x')",
              module="settings.test", REDIS_URL=f"redis://127.0.0.1:{port}/13")
    assert out.returncode == 1
    assert f"the cache at 127.0.0.1:{port} is unreachable" in out.stderr
    assert "REDIS_URL" in out.stderr and "Traceback" not in out.stderr


def test_an_unknown_alert_channel_stops_start_up():
    out = run("check", WEBHOOK_ALERT_CHANNELS="email,slak")
    assert out.returncode == 1
    assert "WEBHOOK_ALERT_CHANNELS names unknown channel(s) slak" in out.stderr
