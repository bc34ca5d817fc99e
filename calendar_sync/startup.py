"""One line instead of a traceback when a process cannot start or reach its services.

``manage.py``, ``gunicorn.conf.py`` and the WSGI module go through ``explain``: a malformed
setting, an unreachable database or an unreachable cache becomes one line on stderr naming the
variable or the host and what to do, with a non-zero exit. ``--traceback`` or ``-v 3`` (or
``STARTUP_TRACEBACK=1`` for gunicorn) still shows the full detail.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import execute_from_command_line
from django.db import OperationalError, connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from settings.env import ImproperEnvironment

# Commands whose documented exit status for "could not run at all" is not 1.
COULD_NOT_RUN_EXIT = {"webhook_health_check": 3}


def wants_traceback(argv: Sequence[str]) -> bool:
    args = list(argv)
    if "--traceback" in args or os.environ.get("STARTUP_TRACEBACK") == "1":
        return True
    for i, arg in enumerate(args):
        if arg in ("-v", "--verbosity") and i + 1 < len(args) and args[i + 1] == "3":
            return True
        if arg in ("-v3", "--verbosity=3"):
            return True
    return False


def _database_where() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"the SQLite database {db['NAME']}"
    return f"the database at {db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}"


def _cache_where() -> str:
    url = urlparse(getattr(settings, "REDIS_URL", "") or "redis://localhost:6379")
    return f"the cache at {url.hostname}:{url.port or 6379}"


def explain(exc: BaseException) -> str | None:
    """The one-line message for a start-up or connectivity failure; None for anything else."""
    if isinstance(exc, ImproperEnvironment | ImproperlyConfigured):
        return f"configuration error: {exc}"
    if isinstance(exc, OperationalError) and connection.connection is None:
        # psycopg: 'connection to server at "h", port 5432 failed: Connection refused\n\t...'
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = first.rsplit("failed: ", 1)[-1].strip()
        return (f"{_database_where()} is unreachable ({reason[:120]}): start it or fix "
                f"DATABASE_URL / DB_HOST / DB_PORT")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"{_cache_where()} is unreachable: start Redis or fix REDIS_URL"
    return None


class TimestampedLines:
    """A text stream that starts each line with the UTC time (lines that already start with
    a date, such as log records, are left alone)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.at_line_start = True

    def write(self, text: str) -> int:
        out = []
        for piece in text.splitlines(keepends=True):
            if self.at_line_start and not _DATED.match(piece):
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                out.append(f"{stamp} ")
            out.append(piece)
            self.at_line_start = piece.endswith("\n")
        self.stream.write("".join(out))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


_DATED = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")


def stamp_output_into_files() -> None:
    """Output appended to a file (cron's and run_scheduler's ``>> cron.log``) gets a time on
    every line; a terminal or a pipe gets the plain text."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
        except (OSError, ValueError, AttributeError):
            continue
        if regular:
            setattr(sys, name, TimestampedLines(stream))


def run_manage(argv: list[str]) -> None:
    stamp_output_into_files()
    if wants_traceback(argv):
        execute_from_command_line(argv)
        return
    try:
        execute_from_command_line(argv)
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        command = argv[1] if len(argv) > 1 else "manage.py"
        sys.stderr.write(f"{command}: {message}\n")
        sys.exit(COULD_NOT_RUN_EXIT.get(command, 1))


def check_settings_or_exit(process: str) -> None:
    """Import the Django settings now (gunicorn's master), so a bad one stops the start."""
    if wants_traceback([]):
        settings.INSTALLED_APPS  # noqa: B018 - importing the settings is the check
        return
    try:
        settings.INSTALLED_APPS  # noqa: B018
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        sys.stderr.write(f"{process}: {message}\n")
        sys.exit(1)
