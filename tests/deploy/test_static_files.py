"""The admin's CSS is served by the application itself: with the apps' own files (make run,
tests) and, in production settings, from collected, hashed files (the container image)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db


def test_the_admin_css_is_served_without_collectstatic(client):
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert b"body" in b"".join(response.streaming_content)


PROBE = """
from django.test import Client
from django.templatetags.static import static
import django; django.setup()
client = Client()
url = static('admin/css/base.css')
response = client.get(url, secure=True)
print(url, response.status_code)
"""


def _dockerfile_collectstatic_env() -> dict[str, str]:
    """The NAME=value words of the Dockerfile's RUN step that collects static files."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    step = next(line for line in text.splitlines() if "collectstatic" in line)
    return dict(word.split("=", 1) for word in step.split() if re.fullmatch(r"[A-Z_]+=\S+", word))


def test_production_serves_the_collected_hashed_files(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    # The image's build step, with the build-time variables the Dockerfile gives it.
    env.update(_dockerfile_collectstatic_env())
    env.update({"DJANGO_SETTINGS_MODULE": "settings.production",
                "STATIC_ROOT": str(tmp_path / "static"), "LOG_DIR": str(tmp_path / "log"),
                "ALLOWED_HOSTS": "testserver"})
    collect = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput",
                              "-v", "0"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    assert collect.returncode == 0, collect.stderr
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr[-2000:]
    url, status = probe.stdout.split()
    assert url.startswith("/static/admin/css/base.") and url != "/static/admin/css/base.css"
    assert status == "200"
