"""`make run`: the whole service on embedded defaults, in one terminal.

Migrates the SQLite database, starts the provider sandbox and the web process (gunicorn), seeds
the demo accounts, creates a staff login, gives the demo calendars their push channels, then
starts the worker and the scheduler (the crontab's jobs) and a light stream of calendar
changes through the sandbox, so notifications arrive, syncs run and the dashboard moves.
Ctrl-C, SIGTERM or SIGHUP stop every process it started (and they stop by themselves if it is
killed).

RUN_PORT, SANDBOX_PORT, VAR_DIR and DEMO_TRAFFIC_SECONDS (0 = no demo changes) move it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from calendar_sync.dev.demo_traffic import DemoTraffic
from calendar_sync.dev.supervisor import ProcessGroup, Stopped, say, stop_on_signals

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
HOST = os.environ.get("RUN_HOST", "127.0.0.1")
PORT = os.environ.get("RUN_PORT", "8000")
SANDBOX_PORT = os.environ.get("SANDBOX_PORT", "8900")
STAFF_USER = os.environ.get("RUN_STAFF_USER", "admin")
VAR = Path(os.environ.get("VAR_DIR", ROOT / "var"))
# Creates or resets the staff login; the password comes in the environment, never in argv.
_STAFF_SNIPPET = (
    "import os\n"
    "from django.contrib.auth import get_user_model\n"
    "user, _ = get_user_model().objects.get_or_create(username=os.environ['RUN_STAFF_USER'])\n"
    "user.is_staff = user.is_superuser = True\n"
    "user.set_password(os.environ['RUN_STAFF_PASSWORD'])\n"
    "user.save()\n"
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "settings.development")
    env.setdefault("SANDBOX_URL", f"http://127.0.0.1:{SANDBOX_PORT}")
    env.setdefault("WEBHOOK_BASE_URL", f"http://{HOST}:{PORT}")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # The scheduler's crontab places its log and lock files with these.
    env.setdefault("LOG_DIR", str(VAR / "log"))
    env.setdefault("LOCK_DIR", str(VAR / "run"))
    env.setdefault("GUNICORN_WORKERS", "2")
    # One Prometheus directory for every process (gunicorn, the worker, the scheduler's jobs),
    # so /metrics also reports the worker's syncs and provider calls, not only the web's.
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR / "prometheus"))
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
    """The long-running processes, in start order (worker and scheduler once seeded)."""
    return [
        ("sandbox", [PY, "-m", "sandbox", "--port", SANDBOX_PORT]),
        ("web", [PY, "-m", "gunicorn", "calendar_sync.wsgi:application",
                 "-c", "gunicorn.conf.py", "--bind", f"{HOST}:{PORT}"]),
        ("worker", [PY, "manage.py", "process_notifications", "-v", "2"]),
        ("scheduler", [PY, "manage.py", "run_scheduler"]),
    ]


def _step(command: str, *args: str) -> None:
    """A one-off command; a failing one is reported and the demo goes on."""
    say(f"[run] {command} {' '.join(args)}".rstrip())
    result = subprocess.run([PY, "manage.py", command, *args], cwd=ROOT, env=_env())
    if result.returncode:
        say(f"[run] {command} exited with {result.returncode}; continuing")


def _staff_login() -> str:
    """A staff user with a new random password on every run (printed, never stored)."""
    password = secrets.token_urlsafe(12)
    env = {**_env(), "RUN_STAFF_USER": STAFF_USER, "RUN_STAFF_PASSWORD": password}
    subprocess.run([PY, "manage.py", "shell", "-c", _STAFF_SNIPPET], cwd=ROOT, env=env,
                   check=True)
    return password


def _summary(password: str, started: list[str], traffic: DemoTraffic | None) -> None:
    base = f"http://{HOST}:{PORT}"
    say("")
    say("[run] ============================================================")
    say(f"[run] dashboard  {base}/webhooks/monitoring/")
    say(f"[run] login      {STAFF_USER} / {password}   (new password every run)")
    say(f"[run] admin      {base}/admin/")
    say(f"[run] sandbox    http://127.0.0.1:{SANDBOX_PORT}/_sandbox/state")
    say(f"[run] running    {', '.join(started)}; cron jobs log to {_env()['LOG_DIR']}/cron.log")
    if traffic:
        say(f"[run] demo       a calendar change every {traffic.interval:g}s "
            "(DEMO_TRAFFIC_SECONDS=0 turns it off)")
    say("[run] Ctrl-C (or SIGTERM/SIGHUP) stops everything")
    say("[run] ============================================================")


def _start_background(group: ProcessGroup) -> list[str]:
    specs = process_specs()
    for name, cmd in specs:
        if name not in ("sandbox", "web"):
            group.start(name, cmd)
    return [name for name, _ in specs]


def _fresh_metrics_dir() -> None:
    """Exists before any process counts into it; a previous run's files would add up."""
    directory = Path(_env()["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def main() -> int:
    stop_on_signals()
    _fresh_metrics_dir()
    _manage("migrate", "--noinput", "-v", "0")
    group = ProcessGroup(ROOT, _env())
    traffic: DemoTraffic | None = None
    specs = dict(process_specs())
    try:
        group.start("sandbox", specs["sandbox"])
        if not _wait_for(f"http://127.0.0.1:{SANDBOX_PORT}/_sandbox/state"):
            say("[run] the sandbox did not start")
            return 1
        group.start("web", specs["web"])
        if not _wait_for(f"http://{HOST}:{PORT}/webhooks/health/"):
            say("[run] the web process did not start")
            return 1
        _step("seed_demo")
        password = _staff_login()
        # Push channels for the demo calendars now, not at the scheduler's next half hour.
        _step("subscription_maintenance")
        started = _start_background(group)
        interval = float(os.environ.get("DEMO_TRAFFIC_SECONDS", "5"))
        if interval > 0:
            traffic = DemoTraffic(f"http://127.0.0.1:{SANDBOX_PORT}", interval, out=say)
            traffic.start()
        _summary(password, started, traffic)
        while (dead := group.first_exited()) is None:
            time.sleep(0.5)
        say(f"[run] {dead} exited; stopping the rest")
        return 1
    except (KeyboardInterrupt, Stopped) as stop:
        say(f"\n[run] stopping ({stop or 'Ctrl-C'})")
        return 0
    finally:
        if traffic:
            traffic.stop()
        group.stop_all()


if __name__ == "__main__":
    sys.exit(main())
