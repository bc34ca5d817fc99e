"""The real nginx with our nginx.conf, in front of gunicorn on the test database."""

from __future__ import annotations

import asyncio
import http.client
import itertools
import re
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from apps.webhooks.models import WebhookNotification
from bench.support import free_port
from tests.support.factories import make_subscription
from tests.support.processes import ROOT

from .procs import NGINX, Gunicorn, Nginx, nginx_test_conf, render_nginx_conf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(NGINX) is None and not Path(NGINX).exists(),
                       reason="nginx is not installed (.ci/run installs nginx-light)"),
]

CONF = (ROOT / "nginx.conf").read_text()
BURST = int(re.search(r"limit_req zone=webhooks burst=(\d+) nodelay;", CONF).group(1))
RATE = int(re.search(r"limit_req_zone \$binary_remote_addr zone=webhooks:\w+ rate=(\d+)r/s;",
                     CONF).group(1))


@pytest.fixture(scope="module")
def stack(django_db_setup, tmp_path_factory):
    """gunicorn (settings.test + production's proxy settings) behind nginx, for the module."""
    tmp = tmp_path_factory.mktemp("nginx")
    app = Gunicorn(tmp, workers=2, threads=8,
                   settings_module="tests.deploy.proxied_settings").start()
    proxy = Nginx(tmp, upstream=f"127.0.0.1:{app.port}").start()
    context = ssl.create_default_context(cafile=str(tmp / "fullchain.pem"))
    yield app, proxy, context
    proxy.stop()
    app.stop()


def _https(stack) -> http.client.HTTPSConnection:
    _, proxy, context = stack
    return http.client.HTTPSConnection("127.0.0.1", proxy.https_port, context=context,
                                       timeout=15)


def _google_headers(sub, token: str, number: int) -> dict[str, str]:
    return {
        "X-Goog-Channel-ID": sub.channel_id, "X-Goog-Channel-Token": token,
        "X-Goog-Resource-ID": sub.resource_id, "X-Goog-Resource-URI": sub.resource_uri,
        "X-Goog-Resource-State": "exists", "X-Goog-Message-Number": str(number),
        "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
        "Content-Length": "0",
    }


def _request(conn, method: str, path: str, body: bytes = b"", headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


def test_the_production_file_passes_nginx_t_with_only_the_certificate_moved(tmp_path):
    conf = render_nginx_conf({
        "/etc/nginx/certs/fullchain.pem": str(tmp_path / "fullchain.pem"),
        "/etc/nginx/certs/privkey.pem": str(tmp_path / "privkey.pem"),
        # This machine has no `nginx` user and no `app` host; everything else is untouched.
        "user nginx;": "user root;",
        "server app:8000;": "server 127.0.0.1:9;",
        "pid /var/run/nginx.pid;": f"pid {tmp_path}/nginx.pid;",
        "error_log /var/log/nginx/error.log warn;": f"error_log {tmp_path}/error.log warn;",
    })
    from .procs import self_signed_certificate

    self_signed_certificate(tmp_path)
    (tmp_path / "nginx.conf").write_text(conf)
    check = subprocess.run([NGINX, "-t", "-c", str(tmp_path / "nginx.conf"), "-p",
                            str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr


def test_the_body_limit_is_the_apps_webhook_max_body_bytes(settings):
    assert "client_max_body_size 1m;" in CONF
    assert settings.WEBHOOK_MAX_BODY_BYTES == 1024 * 1024


@pytest.mark.django_db(transaction=True)
def test_a_google_notification_passes_through_with_x_forwarded_proto_honoured(
        stack):
    app, proxy, _ = stack
    sub, token = make_subscription(channel_id="through-nginx", resource_id="res-through-nginx")

    status, _, _ = _request(_https(stack), "POST", "/webhooks/google/",
                            headers=_google_headers(sub, token, 7))

    assert status == 200
    stored = WebhookNotification.objects.get(subscription=sub)
    assert stored.message_number == 7 and stored.processing_status == "pending"
    # The same request straight to gunicorn (no proxy header) is sent to HTTPS instead: it is
    # nginx's X-Forwarded-Proto that makes the app accept it, and a client cannot forge it
    # through nginx's plain-HTTP port.
    direct = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    status, headers, _ = _request(direct, "POST", "/webhooks/google/",
                                  headers=_google_headers(sub, token, 8))
    assert status == 301 and headers["Location"].startswith("https://")
    plain = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=10)
    status, _, _ = _request(plain, "POST", "/webhooks/google/",
                            headers={**_google_headers(sub, token, 9),
                                     "X-Forwarded-Proto": "https"})
    assert status == 301
    assert WebhookNotification.objects.filter(subscription=sub).count() == 1


def test_an_oversize_body_is_refused_with_413_before_reaching_the_app(stack):
    app, _, _ = stack
    before = app.output().count("/webhooks/microsoft/")
    too_big = b"x" * (1024 * 1024 + 1)

    status, _, _ = _request(_https(stack), "POST", "/webhooks/microsoft/", body=too_big,
                            headers={"Content-Type": "application/json"})
    assert status == 413
    # Just under the limit is passed on (the app answers it: not JSON → 400).
    status, _, _ = _request(_https(stack), "POST", "/webhooks/microsoft/",
                            body=b"x" * (1024 * 1024 - 1024),
                            headers={"Content-Type": "application/json"})
    assert status == 400
    time.sleep(0.2)  # the access log line is written after the response
    assert app.output().count("/webhooks/microsoft/") == before + 1


def test_metrics_are_not_reachable_from_outside(stack):
    app, _, _ = stack
    status, _, body = _request(_https(stack), "GET", "/metrics")
    assert status == 403 and b"calendar_sync_" not in body
    status, _, _ = _request(_https(stack), "GET", "/metrics/")
    assert status == 403
    assert "GET /metrics" not in app.output()


def test_plain_http_is_redirected_to_https_except_acme_challenges(stack):
    _, proxy, _ = stack
    plain = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=10)
    status, headers, _ = _request(plain, "GET", "/webhooks/monitoring/?x=1")
    assert status == 301
    assert headers["Location"] == "https://127.0.0.1/webhooks/monitoring/?x=1"
    status, _, _ = _request(plain, "GET", "/.well-known/acme-challenge/token")
    assert status == 404  # served from the ACME directory, not redirected


@pytest.mark.django_db(transaction=True)
def test_a_steady_stream_of_valid_notifications_is_never_refused(stack):
    sub, token = make_subscription(channel_id="steady", resource_id="res-steady")
    numbers = itertools.count(1)
    statuses: list[int] = []
    lock = threading.Lock()

    def provider_connection() -> None:
        conn = _https(stack)
        for _ in range(10):
            with lock:
                number = next(numbers)
            status, _, _ = _request(conn, "POST", "/webhooks/google/",
                                    headers=_google_headers(sub, token, number))
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=provider_connection) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert statuses == [200] * 160
    assert WebhookNotification.objects.filter(subscription=sub).count() == 160


async def _flood(port: int, context: ssl.SSLContext, count: int) -> tuple[list[int], float]:
    """``count`` requests from one address arriving at once: connect (TLS) every client
    first, then send every request back to back, then read the answers."""
    conns = await asyncio.gather(*(
        asyncio.open_connection("127.0.0.1", port, ssl=context) for _ in range(count)))
    request = (b"GET /webhooks/flood-probe/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Connection: close\r\n\r\n")
    started = time.monotonic()
    for _, writer in conns:
        writer.write(request)
    await asyncio.gather(*(writer.drain() for _, writer in conns))
    send_span = time.monotonic() - started

    async def status(reader, writer) -> int:
        line = await asyncio.wait_for(reader.readline(), timeout=60)
        writer.close()
        return int(line.split()[1])

    return await asyncio.gather(*(status(r, w) for r, w in conns)), send_span


def test_the_rate_limit_passes_its_documented_burst_and_refuses_only_beyond_it(stack):
    app, proxy, context = stack
    # Runs after the other tests (file order), as its flood fills this address's bucket.
    count = BURST + 1 + 150

    statuses, send_span = asyncio.run(_flood(proxy.https_port, context, count))
    passed, limited = statuses.count(405), statuses.count(429)

    # Everything passed on reached the app (405: not a receiver), the rest got nginx's 429.
    assert passed + limited == count, sorted(set(statuses))
    # The whole burst from one address is passed at once: none of it waits or is refused...
    assert passed >= BURST + 1
    # ...and beyond it only RATE per second more.
    assert passed <= BURST + 1 + RATE * (send_span + 1.0)
    assert limited >= count - BURST - 1 - RATE * (send_span + 1.0)
    # Load balancers' health checks are outside the webhook limit.
    status, _, _ = _request(_https(stack), "GET", "/webhooks/health/")
    assert status == 200
    print(f"\n[nginx] {count} requests at once: {passed} passed to the app, {limited} refused "
          f"with 429 (burst {BURST}, rate {RATE}/s, sent within {send_span * 1000:.0f} ms)")


def test_a_test_conf_moves_only_ports_paths_and_upstream(tmp_path):
    """Guard for the other tests: what they run is the production file, not a rewrite."""
    conf = nginx_test_conf(tmp_path, "127.0.0.1:1", free_port(), free_port()).read_text()
    for directive in ("limit_req zone=webhooks", "client_max_body_size 1m;", "deny all;",
                      "proxy_set_header X-Forwarded-Proto $scheme;", "return 301 https://"):
        assert conf.count(directive) == CONF.count(directive)
