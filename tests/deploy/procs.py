"""Real processes for the deployment tests: gunicorn on the test database, nginx with our conf.

Ports are never fixed: gunicorn binds port 0 and reports the port it got; nginx gets ports
probed free just before it starts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.support import free_port
from tests.support.processes import ROOT, child_env

NGINX = "/usr/sbin/nginx"


class Gunicorn:
    """gunicorn with the project's gunicorn.conf.py, on 127.0.0.1 and a port of its choosing."""

    def __init__(self, tmp: Path, *, workers: int = 2, threads: int = 8,
                 settings_module: str = "settings.test", **env: str) -> None:
        self.tmp = tmp
        self.log_path = tmp / "gunicorn.log"
        self.pid_path = tmp / "gunicorn.pid"
        self.args = ["--workers", str(workers), "--threads", str(threads)]
        self.env = child_env(tmp, settings_module, **env)
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 30.0) -> Gunicorn:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "calendar_sync.wsgi:application",
             "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0", "--pid", str(self.pid_path),
             *self.args],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(rb"Listening at: http://127\.0\.0\.1:(\d+)",
                              self.log_path.read_bytes())
            if found:
                self.port = int(found.group(1))
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.output(4000)}")
            time.sleep(0.05)
        if not self.port or not wait_http(f"{self.url}/webhooks/health/", deadline):
            raise RuntimeError(f"gunicorn did not come up: {self.output(4000)}")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(p) for p in children.read_text().split()}

    def output(self, tail: int | None = None) -> str:
        text = self.log_path.read_text(errors="replace")
        return text[-tail:] if tail else text

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "log"):
            self.log.close()


def wait_http(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1, made here (never downloaded)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def render_nginx_conf(replacements: dict[str, str], insert_in_http: str = "") -> str:
    """nginx.conf with exact strings replaced; every one must be present (so the test notices
    when the production file changes under it)."""
    text = (ROOT / "nginx.conf").read_text()
    for needle, replacement in replacements.items():
        assert text.count(needle) == 1, f"nginx.conf no longer contains {needle!r} exactly once"
        text = text.replace(needle, replacement)
    if insert_in_http:
        text = text.replace("http {\n", "http {\n" + insert_in_http, 1)
    return text


def nginx_test_conf(tmp: Path, upstream: str, http_port: int, https_port: int) -> Path:
    """The production nginx.conf moved to a temp dir, free ports and the given upstream."""
    cert, key = self_signed_certificate(tmp)
    conf = render_nginx_conf({
        "user nginx;": "user root;" if os.geteuid() == 0 else "",
        "pid /var/run/nginx.pid;": f"pid {tmp}/nginx.pid;",
        "error_log /var/log/nginx/error.log warn;": f"error_log {tmp}/error.log warn;",
        "access_log /var/log/nginx/access.log timed;": f"access_log {tmp}/access.log timed;",
        "server app:8000;": f"server {upstream};",
        "listen 80 default_server;": f"listen 127.0.0.1:{http_port} default_server;",
        "listen [::]:80 default_server;": "",
        "listen 443 ssl default_server;": f"listen 127.0.0.1:{https_port} ssl default_server;",
        "listen [::]:443 ssl default_server;": "",
        "/etc/nginx/certs/fullchain.pem": str(cert),
        "/etc/nginx/certs/privkey.pem": str(key),
    }, insert_in_http="".join(
        f"    {kind}_temp_path {tmp}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    ))
    path = tmp / "nginx.conf"
    path.write_text(conf)
    return path


class Nginx:
    def __init__(self, tmp: Path, upstream: str) -> None:
        self.tmp = tmp
        self.http_port, self.https_port = free_port(), free_port()
        self.conf = nginx_test_conf(tmp, upstream, self.http_port, self.https_port)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Nginx:
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(self.conf), "-p", str(self.tmp), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode(errors="replace"))
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    def access_log(self) -> str:
        path = self.tmp / "access.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
