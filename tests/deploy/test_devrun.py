"""`make run`: the whole demo comes up on SQLite, changes flow through, Ctrl-C stops it all."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from bench.support import free_port
from tests.support.processes import ROOT

pytestmark = pytest.mark.slow


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        direct = {int(p) for p in path.read_text().split()}
    except OSError:
        return set()
    return direct.union(*(_children(child) for child in direct)) if direct else direct


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_make_run_brings_up_the_demo_and_ctrl_c_stops_every_process(tmp_path):
    port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "LOG_DIR",
                        "PROMETHEUS_MULTIPROC_DIR"}}
    env.update({"VAR_DIR": str(tmp_path / "var"), "RUN_PORT": str(port),
                "SANDBOX_PORT": str(sandbox_port), "DEMO_TRAFFIC_SECONDS": "1"})
    run = subprocess.Popen([sys.executable, "-m", "calendar_sync.dev.run"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in run.stdout],
                     daemon=True).start()

    def wait_for(pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                assert run.poll() is None, "".join(seen)
                continue
            seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r}:\n" + "".join(seen[-80:]))

    try:
        wait_for(r"\[run\] dashboard\s+http://127\.0\.0\.1:\d+/webhooks/monitoring/", 180)
        password = wait_for(r"\[run\] login\s+admin / (\S+)", 5).group(1)
        # A demo change goes out through the sandbox, its push arrives, the worker syncs it.
        wait_for(r"\[demo\] (google|microsoft) \S+: created", 60)
        wait_for(r"worker \| calendar=\d+ rows=\d+ status=completed", 60)
        base = f"http://127.0.0.1:{port}"
        with requests.Session() as browser:
            browser.get(f"{base}/admin/login/", timeout=10)
            login = browser.post(f"{base}/admin/login/?next=/admin/", timeout=10, data={
                "username": "admin", "password": password,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"]})
            assert login.url.endswith("/admin/"), "the printed login does not work"
            dashboard = browser.get(f"{base}/webhooks/monitoring/dashboard/", timeout=30)
            assert dashboard.status_code == 200
            assert browser.get(f"{base}/static/admin/css/base.css",
                               timeout=10).status_code == 200
            assert dashboard.json()["health"]["metrics"]["subscriptions"][
                "active_subscriptions"] >= 1
        # Only the worker observes processing time: /metrics (gunicorn) must merge its files.
        exposition = requests.get(f"{base}/metrics", timeout=30).text
        counts = re.findall(
            r"^calendar_sync_notification_processing_seconds_count\{[^}]*\} (\S+)$",
            exposition, flags=re.M)
        assert sum(float(n) for n in counts) >= 1, "the worker's metrics are missing"
        started = _children(run.pid)
        assert len(started) >= 5  # sandbox, gunicorn master + workers, worker, scheduler
    finally:
        run.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            run.wait(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
    assert run.returncode == 0
    time.sleep(0.5)
    assert [pid for pid in started if _alive(pid)] == []
