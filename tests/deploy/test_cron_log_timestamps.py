"""Lines a command appends to a file (cron.log) carry the time; a terminal or pipe gets none."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.support.processes import ROOT

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LOG_"))}
    env["DJANGO_SETTINGS_MODULE"] = "settings.test"
    return env


def test_output_appended_to_a_log_file_is_timestamped(tmp_path):
    log = tmp_path / "cron.log"
    with log.open("ab") as out:
        subprocess.run([sys.executable, "manage.py", "webhook_health_check", "--help"],
                       cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT, timeout=60,
                       check=True)
    lines = log.read_text().splitlines()
    assert lines and all(STAMP.match(line) for line in lines), lines[:3]


def test_output_to_a_pipe_is_left_alone():
    out = subprocess.run([sys.executable, "manage.py", "webhook_health_check", "--help"],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("usage:")
