"""Can Google deliver push notifications to this domain? (``verify_google_domain``)

Google no longer asks for domain verification; what it needs is an HTTPS address with a
certificate that verifies (a self-signed, untrusted, expired or mismatched one is refused) and
a robots.txt that does not disallow the ``APIs-Google`` user agent. These checks look at the
domain from the outside, the way Google's delivery does.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
from django.conf import settings

from calendar_sync import http

AGENT = "apis-google"
# Renew well before a certificate lapses: an expired one silently stops every delivery.
CERT_MIN_DAYS_LEFT = 14


@dataclass(frozen=True)
class Finding:
    level: str  # ok | problem | note
    message: str
    fix: str = ""
    unreachable: bool = False  # no connection at all: the other checks cannot run


def _ca_bundle(ca_file: str | None) -> str | None:
    return ca_file or os.environ.get("REQUESTS_CA_BUNDLE") or None


def check_certificate(domain: str, port: int, ca_file: str | None, timeout: float) -> Finding:
    context = ssl.create_default_context(cafile=_ca_bundle(ca_file))
    try:
        with socket.create_connection((domain, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=domain) as tls:
            cert = tls.getpeercert()
    except ssl.SSLCertVerificationError as exc:
        return Finding("problem", f"the certificate of {domain} does not verify: "
                       f"{exc.verify_message or exc.reason}",
                       "install a certificate from a public CA (e.g. Let's Encrypt) whose names "
                       f"include {domain}, served with its full chain; Google refuses "
                       "self-signed, untrusted, expired and mismatched certificates")
    except (OSError, ssl.SSLError) as exc:
        return Finding("problem", f"cannot open HTTPS to {domain}:{port}: {exc}",
                       f"make {domain} resolve publicly and accept HTTPS on port {port}",
                       unreachable=True)
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
    days = (expires - datetime.now(UTC)).days
    if days < CERT_MIN_DAYS_LEFT:
        return Finding("problem", f"the certificate of {domain} expires in {days} days "
                       f"({expires:%Y-%m-%d})", "renew it (and automate renewal)")
    return Finding("ok", f"the certificate of {domain} verifies ({days} days left)")


def check_health(base: str, ca_file: str | None, timeout: float) -> Finding:
    url = f"{base}/webhooks/health/"
    try:
        response = http.session().get(url, timeout=timeout, verify=_ca_bundle(ca_file) or True,
                                      allow_redirects=False)
    except requests.RequestException as exc:
        return Finding("problem", f"{url} did not answer: {type(exc).__name__}",
                       "check that the web process is running behind the HTTPS proxy")
    if response.status_code != 200:
        return Finding("problem", f"{url} answered {response.status_code}, not 200",
                       "route /webhooks/ to the web process without redirects or "
                       "authentication, and check the health document for the failing part")
    return Finding("ok", f"{url} answered 200")


def robots_rule(text: str, path: str) -> str | None:
    """The Disallow pattern that blocks APIs-Google from ``path``, or None.

    Only groups naming APIs-Google count: it ignores ``User-agent: *`` groups. The longest
    matching pattern wins, Allow on a tie (Google's documented precedence)."""
    rules: list[tuple[str, str]] = []
    agents: list[str] = []
    in_rules = False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        name, value = (part.strip() for part in line.split(":", 1))
        name = name.lower()
        if name == "user-agent":
            if in_rules:
                agents, in_rules = [], False
            agents.append(value.lower())
        elif name in ("allow", "disallow"):
            in_rules = True
            if AGENT in agents and value:
                rules.append((name, value))
    best: tuple[int, bool, str] | None = None
    for name, pattern in rules:
        regex = re.escape(pattern).replace(r"\*", ".*")
        regex = regex[:-2] + "$" if regex.endswith(r"\$") else regex
        if re.match(regex, path):
            candidate = (len(pattern), name == "allow", pattern)
            best = max(best, candidate) if best else candidate
    return best[2] if best and not best[1] else None


def check_robots(base: str, ca_file: str | None, timeout: float) -> Finding:
    url = f"{base}/robots.txt"
    try:
        response = http.session().get(url, timeout=timeout, verify=_ca_bundle(ca_file) or True)
    except requests.RequestException as exc:
        return Finding("note", f"{url} could not be read: {type(exc).__name__}")
    if response.status_code != 200:
        return Finding("ok", f"no robots.txt ({response.status_code}): nothing blocks APIs-Google")
    blocked = robots_rule(response.text, "/webhooks/google/")
    if blocked:
        return Finding("problem", f"robots.txt disallows APIs-Google from /webhooks/google/ "
                       f"(Disallow: {blocked})",
                       "remove that rule, or add 'Allow: /webhooks/' to the APIs-Google group")
    return Finding("ok", "robots.txt does not block APIs-Google from /webhooks/google/")


def check_base_url(domain: str) -> Finding:
    parts = urlsplit(settings.WEBHOOK_BASE_URL)
    if parts.scheme != "https":
        return Finding("problem", f"WEBHOOK_BASE_URL is {settings.WEBHOOK_BASE_URL}: channels "
                       "would be registered with a plain-HTTP address, which Google refuses",
                       f"set WEBHOOK_BASE_URL=https://{domain}")
    if parts.hostname != domain:
        return Finding("note", f"WEBHOOK_BASE_URL points at {parts.hostname}, not {domain}: "
                       "channels are registered with WEBHOOK_BASE_URL's host")
    return Finding("ok", f"WEBHOOK_BASE_URL uses https://{domain}")


def verify_domain(domain: str, *, port: int = 443, ca_file: str | None = None,
                  timeout: float = 10.0) -> list[Finding]:
    base = f"https://{domain}" if port == 443 else f"https://{domain}:{port}"
    findings = [check_base_url(domain), check_certificate(domain, port, ca_file, timeout)]
    if findings[-1].unreachable:
        return findings
    findings += [check_health(base, ca_file, timeout), check_robots(base, ca_file, timeout)]
    return findings
