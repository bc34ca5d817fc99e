"""`make run`: the whole service on embedded defaults, in one terminal.

Migrates the SQLite database, then starts the provider sandbox and the web process, and stops
every process it started on Ctrl-C. The process list grows with the service (worker,
scheduler, demo traffic).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
HOST = os.environ.get("RUN_HOST", "127.0.0.1")
PORT = os.environ.get("RUN_PORT", "8000")
SANDBOX_PORT = os.environ.get("SANDBOX_PORT", "8900")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "settings.development")
    env.setdefault("SANDBOX_URL", f"http://127.0.0.1:{SANDBOX_PORT}")
    env.setdefault("WEBHOOK_BASE_URL", f"http://{HOST}:{PORT}")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=_env(), check=True)


def _wait_for(url: str, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback only
                if resp.status < 500:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def process_specs() -> list[tuple[str, list[str]]]:
    return [
        ("sandbox", [PY, "-m", "sandbox", "--port", SANDBOX_PORT]),
        ("web", [PY, "-m", "gunicorn", "calendar_sync.wsgi:application",
                 "-c", "gunicorn.conf.py", "--bind", f"{HOST}:{PORT}"]),
    ]


def main() -> int:
    _manage("migrate", "--noinput", "-v", "0")
    procs: list[tuple[str, subprocess.Popen]] = []
    try:
        for name, cmd in process_specs():
            print(f"[run] starting {name}: {' '.join(cmd[1:])}", flush=True)
            procs.append((name, subprocess.Popen(cmd, cwd=ROOT, env=_env())))
            if name == "sandbox":
                _wait_for(f"http://127.0.0.1:{SANDBOX_PORT}/_sandbox/state")
        if _wait_for(f"http://{HOST}:{PORT}/webhooks/health/"):
            print(f"[run] up: http://{HOST}:{PORT}/webhooks/health/", flush=True)
        while all(p.poll() is None for _, p in procs):
            time.sleep(0.5)
        dead = [name for name, p in procs if p.poll() is not None]
        print(f"[run] process exited: {', '.join(dead)}; stopping the rest", flush=True)
        return 1
    except KeyboardInterrupt:
        print("\n[run] stopping", flush=True)
        return 0
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
