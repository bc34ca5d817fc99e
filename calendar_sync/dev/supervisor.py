"""The process group behind `make run`: start named processes, label their output, stop them.

Each child gets its own session, so a Ctrl-C in the terminal reaches only the supervisor, which
then stops every child in reverse start order with SIGTERM (the graceful signal of gunicorn,
the worker and the scheduler), and SIGKILLs what is still alive after a grace period. SIGTERM
and SIGHUP (a closed terminal, an IDE's stop button, ``timeout``) stop it the same way; if the
supervisor itself is killed outright, each child gets SIGTERM from the kernel
(``calendar_sync.dev.pdeathsig``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_print_lock = threading.Lock()


def say(line: str) -> None:
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Stopped(Exception):
    """The supervisor was asked to stop by a signal other than Ctrl-C."""


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the supervisor like Ctrl-C: through its clean-up."""

    def handler(signum: int, frame: object) -> None:
        raise Stopped(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


class ProcessGroup:
    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        say(f"[run] starting {name}: {' '.join([Path(cmd[0]).name, *cmd[1:]])}")
        guarded = [sys.executable, "-m", "calendar_sync.dev.pdeathsig", str(os.getpid()), *cmd]
        proc = subprocess.Popen(guarded, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, text=True, bufsize=1)
        threading.Thread(target=self._pump, args=(name, proc), daemon=True).start()
        self.procs.append((name, proc))
        return proc

    @staticmethod
    def _pump(name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            say(f"{name:>9} | {line.rstrip()}")

    def first_exited(self) -> str | None:
        return next((name for name, p in self.procs if p.poll() is not None), None)

    def stop_all(self, grace: float = 20.0) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                say(f"[run] stopping {name}")
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"[run] {name} did not stop in time: killing it")
                proc.kill()
                proc.wait()
