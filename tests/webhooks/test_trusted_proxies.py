"""Client addresses behind a reverse proxy: WEBHOOK_TRUSTED_PROXIES takes addresses and CIDR
ranges, and a forwarding peer that is not trusted is remembered for validate_deployment."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from webhook_cases import GOOGLE_URL, google_headers

from apps.monitoring.services import validation
from apps.webhooks.services.receiving import ratelimit
from settings.env import ImproperEnvironment, envnetworks

pytestmark = pytest.mark.django_db


def send(client, channel_id: str, n: int, client_address: str, peer: str):
    """A notification forwarded by ``peer`` (the proxy) for ``client_address``."""
    return client.post(GOOGLE_URL, data=b"", content_type="application/octet-stream",
                       headers={**google_headers(channel_id, "t", n),
                                "X-Forwarded-For": client_address}, REMOTE_ADDR=peer)


def test_a_proxy_inside_a_trusted_range_is_believed(settings):
    settings.WEBHOOK_TRUSTED_PROXIES = ["172.30.0.0/24", "::1"]
    request = RequestFactory().post("/", REMOTE_ADDR="172.30.0.7",
                                    HTTP_X_FORWARDED_FOR="203.0.113.50")
    assert ratelimit.client_ip(request) == "203.0.113.50"
    outside = RequestFactory().post("/", REMOTE_ADDR="172.30.1.7",
                                    HTTP_X_FORWARDED_FOR="203.0.113.50")
    assert ratelimit.client_ip(outside) == "172.30.1.7"


def test_clients_behind_a_trusted_range_get_their_own_rate_limit_bucket(client, settings):
    settings.WEBHOOK_TRUSTED_PROXIES = ["172.30.0.0/24"]
    settings.WEBHOOK_RATE_LIMIT_MAX_REQUESTS = 3
    flood = [send(client, "forged", n, "198.51.100.9", "172.30.0.3").status_code
             for n in range(5)]
    other = send(client, "forged-2", 1, "203.0.113.5", "172.30.0.3")
    assert flood[-1] == 429
    assert other.status_code == 404  # a different client is not held to the flood's bucket


def test_a_malformed_trusted_proxy_is_refused_at_start_up_naming_the_setting(monkeypatch):
    monkeypatch.setenv("WEBHOOK_TRUSTED_PROXIES", "172.30.0.0/24, nginx")
    with pytest.raises(ImproperEnvironment, match="WEBHOOK_TRUSTED_PROXIES: 'nginx'"):
        envnetworks("WEBHOOK_TRUSTED_PROXIES", [])


def test_a_malformed_value_set_at_run_time_trusts_no_proxy_and_never_answers_500(
        client, settings):
    settings.WEBHOOK_TRUSTED_PROXIES = ["nginx"]
    response = send(client, "forged", 1, "198.51.100.9", "172.30.0.3")
    assert response.status_code == 404
    request = RequestFactory().post("/", REMOTE_ADDR="172.30.0.3",
                                    HTTP_X_FORWARDED_FOR="198.51.100.9")
    assert ratelimit.client_ip(request) == "172.30.0.3"


def test_validate_deployment_warns_about_an_untrusted_forwarding_peer(client, settings):
    settings.WEBHOOK_TRUSTED_PROXIES = ["127.0.0.1"]
    send(client, "forged", 1, "198.51.100.9", "172.18.0.5")

    check = validation._trusted_proxies()

    assert check.label == "WARN"
    assert "172.18.0.5" in check.detail and "WEBHOOK_TRUSTED_PROXIES" in check.detail


def test_validate_deployment_is_quiet_when_the_proxy_is_trusted(client, settings):
    settings.WEBHOOK_TRUSTED_PROXIES = ["172.18.0.0/16"]
    send(client, "forged", 1, "198.51.100.9", "172.18.0.5")
    assert validation._trusted_proxies().ok
