"""What the web tier writes and sends: no OAuth `code`/`state` in an access log, one HSTS
header, gunicorn on loopback unless told otherwise, header parsing bounded."""

from __future__ import annotations

import datetime
import re
import runpy
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger

from tests.support.processes import ROOT

CALLBACK = "/oauth/google/callback/"
QUERY = "code=4/0AeaYSHsecretcode&state=signed-state-value"


def gunicorn_settings(monkeypatch, **env: str) -> dict:
    monkeypatch.delenv("GUNICORN_BIND", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorns_access_log_has_the_path_without_the_query(monkeypatch):
    conf = gunicorn_settings(monkeypatch)
    cfg = Config()
    cfg.set("access_log_format", conf["access_log_format"])
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": f"{CALLBACK}?{QUERY}", "PATH_INFO": CALLBACK,
               "QUERY_STRING": QUERY, "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.1"}
    response = SimpleNamespace(status="302 Found", sent=0, headers=[])
    atoms = Logger(cfg).atoms(response, SimpleNamespace(headers=[]), environ,
                              datetime.timedelta(milliseconds=12))
    line = conf["access_log_format"] % atoms
    assert CALLBACK in line
    assert "secretcode" not in line and "signed-state" not in line


def test_nginx_logs_the_path_without_the_query():
    conf = (ROOT / "nginx.conf").read_text()
    formats = re.findall(r"log_format\s+\w+\s+((?:'[^']*'\s*)+);", conf)
    assert formats
    for fmt in formats:
        for leak in ("$request ", '$request"', "$request_uri", "$args", "$query_string"):
            assert leak not in fmt


def test_hsts_is_sent_by_django_only():
    nginx = (ROOT / "nginx.conf").read_text()
    assert not re.search(r"add_header\s+Strict-Transport-Security", nginx, re.I)
    production = (ROOT / "settings" / "production.py").read_text()
    assert re.search(r"^SECURE_HSTS_SECONDS = envint\(\"SECURE_HSTS_SECONDS\", [1-9]", production,
                     re.M)


def test_gunicorn_binds_loopback_unless_told_otherwise(monkeypatch):
    assert gunicorn_settings(monkeypatch)["bind"].startswith("127.0.0.1:")
    assert gunicorn_settings(monkeypatch, GUNICORN_BIND="0.0.0.0:8000")["bind"] == "0.0.0.0:8000"
    assert "GUNICORN_BIND=0.0.0.0:8000" in (ROOT / "Dockerfile").read_text()


def test_gunicorn_bounds_header_parsing(monkeypatch):
    conf = gunicorn_settings(monkeypatch)
    assert 0 < conf["limit_request_line"] <= 8190
    assert 0 < conf["limit_request_fields"] <= 100
    assert 0 < conf["limit_request_field_size"] <= 8190
