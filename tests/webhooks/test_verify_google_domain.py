"""`verify_google_domain` against a local HTTPS server whose certificate comes from a test CA:
it passes only when Google could deliver, and says what is wrong and how to fix it."""

from __future__ import annotations

import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command

from apps.webhooks.services.subscriptions.domain_check import robots_rule


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(tmp_path, host: str = "localhost", valid_days: int = 90):
    """A CA (written to ca.pem) and a server certificate for ``host`` it signed."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Test CA")).issuer_name(_name("Test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=valid_days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()))
    return str(tmp_path / "ca.pem"), str(tmp_path / "server.pem")


class Site(ThreadingHTTPServer):
    health_status = 200
    robots: str | None = None


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/webhooks/health/":
            self._answer(self.server.health_status, '{"status": "pass"}')
        elif self.path == "/robots.txt" and self.server.robots is not None:
            self._answer(200, self.server.robots)
        else:
            self._answer(404, "not found")

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def https_site(tmp_path, settings):
    """Start a site: https_site(host=..., valid_days=...) -> (server, port, ca_file)."""
    servers = []

    def start(host: str = "localhost", valid_days: int = 90):
        ca_file, server_pem = make_pki(tmp_path, host, valid_days)
        server = Site(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server_pem)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        port = server.server_address[1]
        settings.WEBHOOK_BASE_URL = f"https://localhost:{port}"
        return server, port, ca_file

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def verify(port: int, *extra: str) -> tuple[bool, str]:
    out = StringIO()
    try:
        call_command("verify_google_domain", "--domain", "localhost", "--port", str(port),
                     "--timeout", "5", *extra, stdout=out)
    except CommandError as exc:
        return False, out.getvalue() + str(exc)
    return True, out.getvalue()


def test_a_site_google_can_reach_passes(https_site):
    _, port, ca_file = https_site()

    ok, output = verify(port, "--ca-file", ca_file)

    assert ok, output
    assert "problem" not in output and "answered 200" in output


def test_a_certificate_from_an_unknown_ca_is_refused_with_a_fix(https_site):
    _, port, _ = https_site()

    ok, output = verify(port)  # only the system's CAs

    assert not ok
    assert "does not verify" in output and "fix: install a certificate from a public CA" in output


def test_requests_ca_bundle_is_honoured(https_site, monkeypatch):
    _, port, ca_file = https_site()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)

    ok, output = verify(port)

    assert ok, output


def test_a_certificate_for_another_name_is_refused(https_site):
    _, port, ca_file = https_site(host="other.example")

    ok, output = verify(port, "--ca-file", ca_file)

    assert not ok and "does not verify" in output and "mismatch" in output.lower()


def test_a_certificate_about_to_expire_is_reported(https_site):
    _, port, ca_file = https_site(valid_days=5)

    ok, output = verify(port, "--ca-file", ca_file)

    assert not ok and "expires in" in output and "fix: renew it" in output


def test_an_unhealthy_endpoint_is_reported(https_site):
    server, port, ca_file = https_site()
    server.health_status = 503

    ok, output = verify(port, "--ca-file", ca_file)

    assert not ok and "answered 503, not 200" in output


def test_robots_txt_blocking_apis_google_is_reported(https_site):
    server, port, ca_file = https_site()
    server.robots = "User-agent: APIs-Google\nDisallow: /webhooks/\n"

    ok, output = verify(port, "--ca-file", ca_file)

    assert not ok and "robots.txt disallows APIs-Google" in output
    assert "fix: remove that rule" in output


def test_a_plain_http_base_url_is_reported(https_site, settings):
    _, port, ca_file = https_site()
    settings.WEBHOOK_BASE_URL = f"http://localhost:{port}"

    ok, output = verify(port, "--ca-file", ca_file)

    assert not ok and "fix: set WEBHOOK_BASE_URL=https://localhost" in output


def test_nothing_listening_is_reported_without_further_checks(unused_tcp_port, settings):
    settings.WEBHOOK_BASE_URL = "https://localhost"

    ok, output = verify(unused_tcp_port)

    assert not ok and "cannot open HTTPS" in output
    assert output.count("problem:") == 1 and "robots" not in output


@pytest.mark.parametrize(("robots", "blocked"), [
    ("User-agent: *\nDisallow: /\n", None),  # APIs-Google ignores the * group
    ("User-agent: APIs-Google\nDisallow: /\n", "/"),
    ("User-agent: Googlebot\nUser-agent: APIs-Google\nDisallow: /webhooks\n", "/webhooks"),
    ("User-agent: APIs-Google\nDisallow: /\nAllow: /webhooks/\n", None),  # longest wins
    ("User-agent: APIs-Google\nDisallow: /*/google/$\n", "/*/google/$"),
    ("User-agent: APIs-Google\nDisallow:\n", None),
    ("User-agent: APIs-Google\nDisallow: /admin/\n\nUser-agent: *\nDisallow: /webhooks/\n", None),
])
def test_robots_rules_are_read_the_way_google_reads_them(robots, blocked):
    assert robots_rule(robots, "/webhooks/google/") == blocked


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
