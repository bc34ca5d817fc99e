"""Database outages: every query refused on this connection (``database_unreachable``), or a
PostgreSQL server of a test's own, to stop and restart without touching the shared one.

``private_database`` copies the test database (schema and rows) into a fresh server on a free
port and points this process's connection at it, so fixtures, the ORM and child processes
(``child_env`` reads the connection's settings) all use it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import OperationalError, connection

from bench.support import free_port
from tests.support.processes import ROOT

BIN = Path(shutil.which("pg_ctl") or "/usr/local/bin/pg_ctl").parent
# The server refuses to run as root; the image's postgres account runs it.
USER = "postgres" if os.geteuid() == 0 else None


GONE = "127.0.0.1:1"  # no database server listens there


def printed_without_database(code: str) -> tuple[object, str]:
    """Run ``code`` (Django set up) in a child process whose database server is gone: the last
    line it prints, read as JSON, and everything it printed."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="settings.test",
               DATABASE_URL=f"postgres://postgres@{GONE}/calendar_sync")
    out = subprocess.run([sys.executable, "-c", "import django, json; django.setup(); " + code],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout


@contextmanager
def database_unreachable() -> Iterator[None]:
    """Every query on this connection fails as if the server were gone.

    Savepoint statements still pass so that the test's own transaction stays usable.
    """
    def refuse(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")):
            return execute(sql, params, many, context)
        raise OperationalError("could not connect to server: Connection refused")

    with connection.execute_wrapper(refuse):
        yield


class PrivatePostgres:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.data = home / "pgdata"
        self.port = free_port()
        self.log = home / "postgres.log"

    def _run(self, *args: str) -> None:
        subprocess.run([str(BIN / args[0]), *args[1:]], check=True, user=USER,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60)

    def init(self) -> PrivatePostgres:
        self.home.mkdir(parents=True, exist_ok=True)
        if USER:
            shutil.chown(self.home, USER)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E",
                  "UTF8", "--no-sync")
        return self.start()

    def start(self) -> PrivatePostgres:
        options = (f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w",
                  "start")
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self, outage_seconds: float) -> None:
        """Down (every session cut, new ones refused) for ``outage_seconds``, then back."""
        self.stop()
        time.sleep(outage_seconds)
        self.start()
        connection.close()  # this test's own session was cut too

    def copy_database(self, name: str, source_port: int | str) -> None:
        src = ["-h", "127.0.0.1", "-U", "postgres"]
        subprocess.run([shutil.which("createdb") or "createdb", *src, "-p", str(self.port),
                        name], check=True, timeout=60)
        dump = subprocess.run([shutil.which("pg_dump") or "pg_dump", *src, "-p",
                               str(source_port), name], check=True, capture_output=True,
                              timeout=120).stdout
        subprocess.run([shutil.which("psql") or "psql", *src, "-p", str(self.port), "-q",
                        "-v", "ON_ERROR_STOP=1", "-d", name], input=dump, check=True,
                       capture_output=True, timeout=120)


@contextmanager
def private_database() -> Iterator[PrivatePostgres]:
    """The test database, moved to a private server for the duration."""
    if not shutil.which("initdb") or not shutil.which("pg_dump"):
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl, pg_dump) are not installed")
    # Not under pytest's tmp_path: the postgres account cannot enter root's private folders.
    home = Path(tempfile.mkdtemp(prefix="calendar-sync-pg-"))
    server = PrivatePostgres(home).init()
    original = dict(connection.settings_dict)
    try:
        connection.close()
        server.copy_database(original["NAME"], original["PORT"] or 5432)
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(server.port))
        yield server
    finally:
        connection.close()
        connection.settings_dict.update(HOST=original["HOST"], PORT=original["PORT"])
        try:
            server.stop()
        except subprocess.SubprocessError:
            pass
        shutil.rmtree(home, ignore_errors=True)
