"""Child processes of a test (manage.py commands, gunicorn, workers) on the test's database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The database this test uses (pytest's ``test_…`` one, or a private server it moved to)
    as a URL for child processes."""
    from django.db import connection

    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(tmp: Path, settings_module: str = "settings.test", **extra: Any) -> dict[str, str]:
    """Environment for a child sharing this test's database and Redis; what it writes goes
    under ``tmp`` (never the checkout's var/)."""
    from django.conf import settings

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "WEBHOOK_"))}
    prom = tmp / "prometheus"
    prom.mkdir(exist_ok=True)
    env.update({
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": database_url(),
        "REDIS_URL": getattr(settings, "REDIS_URL", "redis://127.0.0.1:6379/15"),
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
        "VAR_DIR": str(tmp),
        "LOG_DIR": str(tmp / "log"),
        "PYTHONUNBUFFERED": "1",
        **{k: str(v) for k, v in extra.items()},
    })
    return env


def run_settings(module: str, *argv: str, **env: str) -> subprocess.CompletedProcess:
    """``python *argv`` in the checkout under settings ``module``, inheriting none of the
    operator's WEBHOOK_/LOG_/GUNICORN_ variables or secrets (each test names what it sets);
    what it writes goes to the session's temporary VAR_DIR / LOG_DIR."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(
        ("WEBHOOK_", "LOG_", "GUNICORN_", "SECRET_KEY", "FIELD_ENCRYPTION_KEY"))}
    base.update({"DJANGO_SETTINGS_MODULE": module, "LOG_DIR": os.environ["LOG_DIR"], **env})
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=base, capture_output=True,
                          text=True, timeout=60)


class Processes:
    """Subprocesses started by a test, each logging to a file; all stopped on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, Any] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        out = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc.log_file = out
        self.procs[name] = proc
        return proc

    def output(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.log_file.close()
