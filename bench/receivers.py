"""Receiver benchmark: valid Google notifications against gunicorn on PostgreSQL, compared in
the same run with a baseline view that only INSERTs one row.

Steps: recreate the ``calendar_sync_bench`` database and migrate it; create subscriptions with
their tokens (many channels); start gunicorn (gunicorn.conf.py) on a free loopback port; then,
alternating receiver and baseline, a closed-loop phase at full speed (maximum rate and its
latency), and an open-loop phase at half of the receiver's maximum rate (its p99, measured from
each request's scheduled time so that queueing is not hidden). Finally every acknowledged
notification is looked up in the table.

The load generator is a small raw-socket HTTP/1.1 keep-alive client in threads: cheap enough
on the client side to leave the CPU to the server. Loopback only, about a minute in total.
Environment: BENCH_DATABASE_URL, BENCH_SECONDS (per phase, default 8), BENCH_CONNECTIONS
(default 16), BENCH_CHANNELS (default 200).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import psycopg2

from bench.support import ROOT, free_port, recreate_database

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/calendar_sync_bench"
TARGETS = {"ratio": 0.9, "p99_half_ms": 50.0}
SLICES = 4  # the full-speed phases alternate receiver and baseline this many times


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, 2xx only
    acked: list[str] = field(default_factory=list)  # dedup keys acknowledged with a 2xx
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.acked) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# --- Setup (run in subprocesses so this process never needs Django) ------------------------
def django_env(url: str) -> dict:
    return dict(os.environ, DJANGO_SETTINGS_MODULE="bench.settings", BENCH_DATABASE_URL=url,
                PYTHONPATH=str(ROOT))


def seed(channels: int) -> None:
    """(subprocess) Subscriptions with known tokens; prints them as JSON."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from apps.calendars.models import Calendar, CalendarAccount
    from apps.webhooks.models import WebhookSubscription

    user = get_user_model().objects.create_user("bench", "bench@example.com", "x")
    account = CalendarAccount.objects.create(user=user, provider="google",
                                             email="bench@example.com")
    out = []
    for i in range(channels):
        calendar = Calendar.objects.create(calendar_account=account,
                                           provider_calendar_id=f"cal{i}@group")
        sub = WebhookSubscription(calendar=calendar, provider="google",
                                  channel_id=f"bench-{i:05d}-{os.urandom(6).hex()}",
                                  resource_id=f"res{i}", status="active")
        token = sub.issue_token()
        sub.save()
        out.append({"pk": sub.pk, "channel": sub.channel_id, "token": token,
                    "resource": sub.resource_id, "calendar": calendar.provider_calendar_id})
    print(json.dumps(out))


def start_gunicorn(url: str, port: int) -> subprocess.Popen:
    env = django_env(url) | {"GUNICORN_MAX_REQUESTS": "0"}  # no worker recycling mid-phase
    log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would stall gunicorn
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "calendar_sync.wsgi:application", "-c",
         "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--access-logfile", "/dev/null"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET /webhooks/health/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if s.recv(64)[8:13] == b" 200 ":
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    log.seek(0)
    raise RuntimeError("gunicorn did not become healthy: " + log.read().decode()[-2000:])


# --- Load ---------------------------------------------------------------------------------
class Connection:
    """A minimal keep-alive HTTP/1.1 client: send bytes, read one response, return status."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = b""

    def request(self, data: bytes) -> int:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buf = b""
        try:
            self.sock.sendall(data)
            while b"\r\n\r\n" not in self.buf:
                self.buf += self._recv()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            lower = head.lower()
            length = 0
            if b"content-length:" in lower:
                length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += self._recv()
            self.buf = rest[length:]
            if b"connection: close" in lower:
                self.close()
            return int(head[9:12])
        except (OSError, ValueError):
            self.close()
            raise

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by server")
        return chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


class Workload:
    """Builds distinct valid notifications spread round-robin over the channels."""

    def __init__(self, subscriptions: list[dict]) -> None:
        self.subs = subscriptions
        self.numbers = itertools.count(1000)

    def next(self, baseline: bool) -> tuple[str, bytes]:
        n = next(self.numbers)
        sub = self.subs[n % len(self.subs)]
        path = "/webhooks/bench-baseline/" if baseline else "/webhooks/google/"
        key = f"{'baseline' if baseline else 'google'}:{sub['channel']}:{n}"
        extra = f"X-Bench-Subscription: {sub['pk']}\r\n" if baseline else ""
        data = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
            f"User-Agent: APIs-Google\r\nX-Goog-Channel-ID: {sub['channel']}\r\n"
            f"X-Goog-Channel-Token: {sub['token']}\r\nX-Goog-Resource-ID: {sub['resource']}\r\n"
            f"X-Goog-Resource-State: exists\r\nX-Goog-Message-Number: {n}\r\n"
            f"X-Goog-Resource-URI: https://www.googleapis.com/calendar/v3/calendars/"
            f"{sub['calendar']}/events?alt=json\r\n{extra}\r\n"
        )
        return key, data.encode()


def run_phase(name: str, port: int, work: Workload, baseline: bool, seconds: float,
              threads: int, rate: float | None = None) -> Phase:
    """Closed loop (rate=None: each thread sends as fast as answers come) or open loop at
    ``rate`` requests/s (latency counted from each request's scheduled send time)."""
    phase = Phase(name)
    lock = threading.Lock()
    slots = itertools.count()
    start = time.perf_counter() + 0.05
    deadline = start + seconds

    def loop() -> None:
        conn, latencies, acked, failures = Connection(port), [], [], {}
        while True:
            if rate is None:
                scheduled = time.perf_counter()
            else:
                scheduled = start + next(slots) / rate
                time.sleep(max(0.0, scheduled - time.perf_counter()))
            if scheduled >= deadline:
                break
            key, data = work.next(baseline)
            try:
                status = conn.request(data)
            except (OSError, ValueError) as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                continue
            if 200 <= status < 300:
                latencies.append(time.perf_counter() - scheduled)
                acked.append(key)
            else:
                failures[str(status)] = failures.get(str(status), 0) + 1
        conn.close()
        with lock:
            phase.latencies += latencies
            phase.acked += acked
            for k, v in failures.items():
                phase.failures[k] = phase.failures.get(k, 0) + v

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    phase.seconds = max(time.perf_counter(), deadline) - start
    return phase


# --- Report -------------------------------------------------------------------------------
def stored_keys(url: str) -> set[str]:
    parsed = urlparse(url)
    conn = psycopg2.connect(dbname=parsed.path.lstrip("/"), user=parsed.username or "postgres",
                            password=parsed.password or "", host=parsed.hostname,
                            port=parsed.port or 5432)
    with conn.cursor() as cursor:
        cursor.execute("SELECT dedup_key FROM webhooks_webhooknotification")
        keys = {row[0] for row in cursor}
    conn.close()
    return keys


def merge(name: str, phases: list[Phase]) -> Phase:
    total = Phase(name, seconds=sum(p.seconds for p in phases))
    for p in phases:
        total.latencies += p.latencies
        total.acked += p.acked
        for k, v in p.failures.items():
            total.failures[k] = total.failures.get(k, 0) + v
    return total


def line(p: Phase) -> str:
    failures = f"  non-2xx/errors {p.failures}" if p.failures else ""
    return (f"{p.name:<26} {p.rate:8.0f} acked/s   p50 {p.percentile(0.50):6.1f} ms   "
            f"p99 {p.percentile(0.99):6.1f} ms   ({len(p.acked)} acked){failures}")


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    seconds = float(os.environ.get("BENCH_SECONDS", "8"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "16"))
    channels = int(os.environ.get("BENCH_CHANNELS", "200"))
    print(f"database {urlparse(url).path.lstrip('/')}, {channels} channels, {connections} "
          f"connections, {seconds:g} s per phase, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    recreate_database(url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                   env=django_env(url), check=True)
    seeded = subprocess.run([sys.executable, "-m", "bench.receivers", "seed", str(channels)],
                            cwd=ROOT, env=django_env(url), check=True, capture_output=True,
                            text=True)
    work = Workload(json.loads(seeded.stdout.strip().splitlines()[-1]))
    port = free_port()
    server = start_gunicorn(url, port)
    try:
        # Warm up connections and code paths (their acknowledgements are checked too).
        warm = [run_phase("warm-up", port, work, baseline, 1.5, connections)
                for baseline in (True, False)]
        runs: dict[str, list[Phase]] = {"receiver": [], "baseline": []}
        for _ in range(SLICES):  # alternate short slices: drift on a busy machine hits both
            for name in ("baseline", "receiver"):
                runs[name].append(run_phase(name, port, work, name == "baseline",
                                            seconds / SLICES, connections))
        receiver, base = merge("receiver (max)", runs["receiver"]), merge(
            "baseline (max)", runs["baseline"])
        half = receiver.rate / 2
        receiver_half = run_phase(f"receiver @ {half:.0f}/s", port, work, False, seconds,
                                  connections * 2, rate=half)
        base_half = run_phase(f"baseline @ {base.rate / 2:.0f}/s", port, work, True, seconds,
                              connections * 2, rate=base.rate / 2)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    keys = stored_keys(url)
    acked = [key for phase in (*warm, receiver, receiver_half, base, base_half)
             for key in phase.acked]
    missing = [k for k in acked if k not in keys]
    ratio = receiver.rate / base.rate if base.rate else 0.0
    for phase in (base, receiver, base_half, receiver_half):
        print(line(phase))
    print(f"throughput ratio receiver/baseline: {ratio:.3f} (target >= {TARGETS['ratio']})")
    p99 = receiver_half.percentile(0.99)
    print(f"receiver p99 at half of its max rate: {p99:.1f} ms "
          f"(target <= {TARGETS['p99_half_ms']:.0f} ms)")
    print(f"acknowledged: {len(acked)}, present in the table: {len(acked) - len(missing)}, "
          f"missing: {len(missing)} (rows in the table: {len(keys)})")
    print("load average (1, 5, 15 min) at the end: "
          + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    met = ratio >= TARGETS["ratio"] and p99 <= TARGETS["p99_half_ms"]
    print("targets: " + ("met" if met else "NOT met (see figures above)"))
    return 1 if missing else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"]:
        seed(int(sys.argv[2]))
    else:
        sys.exit(main())
