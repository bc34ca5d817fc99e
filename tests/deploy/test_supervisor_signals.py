"""`make run`'s supervisor: SIGTERM and SIGHUP stop every child like Ctrl-C does, and the
children stop by themselves when the supervisor is killed outright (SIGKILL)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import ROOT

from .test_devrun import _alive

# A supervisor with two long-running children, as `make run` starts them.
SUPERVISOR = """
import sys, time
from pathlib import Path
from calendar_sync.dev.supervisor import ProcessGroup, Stopped, stop_on_signals
stop_on_signals()
group = ProcessGroup(Path('.'), None)
children = [group.start(f'child{i}', [sys.executable, '-c', 'import time; time.sleep(600)'])
            for i in range(2)]
try:
    print('READY', *[p.pid for p in children], flush=True)
    while True:
        time.sleep(0.2)
except Stopped as stop:
    print('STOPPED', stop, flush=True)
finally:
    group.stop_all(grace=5)
"""


def _running_their_command(pids: list[int]) -> bool:
    """Past the launcher: each child now runs its own program."""
    try:
        return all(b"pdeathsig" not in Path(f"/proc/{pid}/cmdline").read_bytes()
                   for pid in pids)
    except OSError:
        return False


def _start() -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in proc.stdout:
        if line.startswith("READY"):
            children = [int(p) for p in line.split()[1:]]
            deadline = time.monotonic() + 10
            while not _running_their_command(children) and time.monotonic() < deadline:
                time.sleep(0.05)
            return proc, children
    raise AssertionError(f"supervisor did not start: {proc.wait()}")


def _gone(pids: list[int], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminate_or_hangup_stops_every_child(sig):
    proc, children = _start()
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == 0
    assert f"STOPPED {sig.name}" in proc.stdout.read()
    assert _gone(children, 2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_children_exit_when_the_supervisor_is_killed_outright():
    proc, children = _start()
    assert all(_alive(pid) for pid in children)
    proc.kill()
    proc.wait()
    assert _gone(children), "children outlived a SIGKILLed supervisor"
