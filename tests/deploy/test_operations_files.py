"""Day-thirty files: capped container logs, tagged images, a logrotate file that works."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.processes import ROOT

from .test_compose import config  # noqa: F401 - the compose CLI's resolved configuration

LOGROTATE = shutil.which("logrotate")


def test_every_container_log_is_capped(config):  # noqa: F811
    for name, service in config["services"].items():
        options = (service.get("logging") or {}).get("options") or {}
        assert options.get("max-size") and options.get("max-file"), name


def test_the_app_image_is_tagged_from_the_environment(config):  # noqa: F811
    images = {config["services"][s]["image"] for s in ("app", "worker", "scheduler", "migrate")}
    assert images == {"calendar-sync:latest"}  # IMAGE_TAG empty in the example
    assert "${IMAGE_TAG:-latest}" in (ROOT / "docker-compose.yml").read_text()


@pytest.mark.skipif(LOGROTATE is None, reason="logrotate is not installed")
def test_the_shipped_logrotate_file_rotates_the_app_logs(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("webhooks.log", "webhook_errors.log", "cron.log"):
        (logs / name).write_text("a line\n")
    conf = tmp_path / "logrotate.conf"
    conf.write_text((ROOT / "logrotate.conf").read_text().replace("/app/logs", str(logs)))
    run = subprocess.run([LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(conf)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    for name in ("webhooks.log", "webhook_errors.log", "cron.log"):
        assert (logs / name).exists() and (logs / name).read_text() == ""  # recreated
        assert len(list(logs.glob(f"{name}-*"))) == 1  # the rotated file
