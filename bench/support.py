"""What the benchmarks share: a database of their own, free loopback ports, child processes
and the provider sandbox in a process of its own.

Each benchmark's ``main()`` runs it again in a fresh interpreter (``run_in_own_database``) bound
to its own database, recreated each run, so nothing it builds touches the development or test
databases. The tests use ``free_port`` and ``wait_http`` too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import requests

ROOT = Path(__file__).resolve().parent.parent
CHILD = "BENCH_CHILD"  # set in the interpreter that runs the measurements


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, seconds: float = 30.0) -> None:
    """Wait until ``url`` answers below 500 (a process we started is up), or raise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {seconds}s")


def database_url(name: str) -> str:
    """DATABASE_URL (or the local default) with its database name replaced by ``name``."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/calendar_sync")
    return urlunparse(urlparse(base)._replace(path=f"/{name}"))


def in_child() -> bool:
    return os.environ.get(CHILD) == "1"


def run_in_own_database(module: str, db_name: str, timeout: float | None = None,
                        **extra: str) -> int:
    """``python -m module`` in a fresh interpreter on database ``db_name``; its exit code."""
    env = {**os.environ, CHILD: "1", "DJANGO_SETTINGS_MODULE": "settings.test",
           "DATABASE_URL": database_url(db_name),
           "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
           "PYTHONUNBUFFERED": "1", **extra}
    try:
        return subprocess.call([sys.executable, "-m", module], cwd=ROOT, env=env,
                               timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{module}: timed out", flush=True)
        return 1


def recreate_database(url: str) -> None:
    """Drop and create the database ``url`` names, on its server."""
    import psycopg2

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = psycopg2.connect(dbname="postgres", user=parsed.username or "postgres",
                             password=parsed.password or "", host=parsed.hostname,
                             port=parsed.port or 5432)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def fresh_django() -> None:
    """(in the child) DATABASE_URL's database recreated and migrated, Django set up."""
    import django
    from django.core.management import call_command

    recreate_database(os.environ["DATABASE_URL"])
    django.setup()
    call_command("migrate", verbosity=0)


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A child process in the checkout, its output to ``log`` (a file: a full pipe stalls)."""
    out = open(log, "w")  # noqa: SIM115 - lives with the process
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(procs: list[subprocess.Popen], seconds: float = 15) -> None:
    """SIGTERM every process, then wait for each (killing what does not stop in time)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Sandbox:
    """The provider sandbox in its own process, like a real provider."""

    def __init__(self, log_dir: Path, workers: int, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = spawn([sys.executable, "-m", "sandbox", "--port", str(self.port),
                           "--workers", str(workers), *extra], log_dir / "sandbox.log")
        wait_http(f"{self.url}/_sandbox/health")

    def faults(self, **config: object) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json=config, timeout=10).raise_for_status()

    def counter(self, key: str) -> int:
        state = requests.get(f"{self.url}/_sandbox/state", timeout=10).json()
        return int(state["counters"].get(key, 0))

    def endpoints(self) -> dict[str, str]:
        """The provider endpoints, pointed at this sandbox (settings and environment)."""
        names = ("SANDBOX_URL", "GOOGLE_API_BASE_URL", "GOOGLE_OAUTH_BASE_URL",
                 "MS_GRAPH_BASE_URL", "MS_LOGIN_BASE_URL")
        return {**dict.fromkeys(names, self.url), "GOOGLE_TOKEN_URL": f"{self.url}/token"}

    def point_settings_here(self) -> None:
        from django.conf import settings

        for name, value in self.endpoints().items():
            setattr(settings, name, value)

    def stop(self) -> None:
        stop([self.proc])
