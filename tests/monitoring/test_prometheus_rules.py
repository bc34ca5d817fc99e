"""The shipped Prometheus rules: valid for promtool, their unit tests pass (a total outage
pages within 5 minutes, a 0.05 % trickle pages nobody), and they read counters /metrics has."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from calendar_sync import sli
from tests.support.processes import ROOT

RULES = ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    if not shutil.which("promtool"):
        # A developer's `make test` runs without it; CI (.ci/run installs it) never skips.
        if os.environ.get("CI"):
            pytest.fail("promtool missing: .ci/run installs Debian's prometheus")
        pytest.skip("promtool is not installed (.ci/run installs Debian's prometheus)")
    return subprocess.run(["promtool", *args], cwd=RULES, capture_output=True, text=True,
                          timeout=60)


def test_promtool_accepts_the_rules():
    run = promtool("check", "rules", "slo-rules.yml")
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_rules_page_for_an_outage_and_not_for_a_trickle():
    run = promtool("test", "rules", "slo-rules.test.yml")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.django_db
def test_the_rules_read_counters_that_metrics_exposes(client):
    sli.record("google", requests_ok=1, changes=1, changes_fresh=1)
    exposed = set(re.findall(r"^(calendar_sync_slo_\w+)\{", client.get("/metrics").content.decode(),
                             re.M))
    used = set(re.findall(r"\b(calendar_sync_slo_\w+_total)\b",
                          (RULES / "slo-rules.yml").read_text()))
    assert used and used <= exposed
