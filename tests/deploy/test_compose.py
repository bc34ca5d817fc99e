"""docker-compose.yml, .env.example, Dockerfile and .dockerignore: checked without a Docker
engine (none runs here) — the compose CLI's own `config`, and the project for every command."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands, load_command_class

from tests.support.processes import ROOT, child_env

COMPOSE = shutil.which("docker-compose")
COMPOSE_CMD = [COMPOSE] if COMPOSE else (["docker", "compose"] if shutil.which("docker") else [])
needs_compose = pytest.mark.skipif(not COMPOSE_CMD, reason="docker-compose is not installed "
                                                          "(.ci/run installs it)")
SECRETS = ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD",
           "METRICS_TOKEN")
APP_SERVICES = {"migrate", "app", "worker", "scheduler"}


def _project(tmp: Path, fill_secrets: bool) -> Path:
    """A copy of the compose file with an .env made from .env.example (secrets generated)."""
    shutil.copy(ROOT / "docker-compose.yml", tmp / "docker-compose.yml")
    text = (ROOT / ".env.example").read_text()
    if fill_secrets:
        for name in SECRETS:
            text, n = re.subn(rf"^{name}=$", f"{name}={secrets.token_hex(24)}", text,
                              flags=re.M)
            assert n == 1, f".env.example should list {name} with an empty value"
    (tmp / ".env").write_text(text)
    return tmp


def _config(project: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in child_env(project).items() if k not in SECRETS}
    return subprocess.run([*COMPOSE_CMD, "--project-directory", str(project), "-f",
                           str(project / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, timeout=60, cwd=project, env=env)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    if not COMPOSE_CMD:
        pytest.skip("docker-compose is not installed")
    result = _config(_project(tmp_path_factory.mktemp("compose"), fill_secrets=True))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _command_lines(service: dict) -> list[list[str]]:
    """Each program a service runs (an `sh -c "a && b"` is two)."""
    cmd = service["command"]
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


@needs_compose
def test_compose_config_passes_with_an_env_made_from_the_example(config):
    services = config["services"]
    assert set(services) == APP_SERVICES | {"db", "redis", "nginx"}
    assert services["db"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly yes" in " ".join(services["redis"]["command"])
    for name in ("app", "worker", "scheduler"):
        deps = services[name]["depends_on"]
        assert deps["db"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert services["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"
    assert {"db", "redis"} & set(services["nginx"].get("networks", {})) == set()
    assert config["networks"]["backend"]["internal"] is True
    assert not services["db"].get("ports") and not services["redis"].get("ports")


@needs_compose
def test_compose_refuses_to_run_with_the_secrets_left_blank(tmp_path):
    result = _config(_project(tmp_path, fill_secrets=False))
    assert result.returncode != 0
    assert "in .env" in result.stderr


def test_the_compose_file_itself_holds_no_secret():
    text = (ROOT / "docker-compose.yml").read_text()
    for line in text.splitlines():
        found = re.match(r"\s*\w*(PASSWORD|SECRET|TOKEN|_KEY)\w*:\s*(\S+)", line)
        if found:
            assert found.group(2).startswith("${"), line
        # No credentials written into a URL either (redis://:${VAR}@ is fine).
        assert not re.search(r"://[^/\s:]*:(?!\$\{)[^@\s]+@", line), line


@needs_compose
def test_every_service_command_exists_in_the_project(config, tmp_path):
    commands = get_commands()
    for name in APP_SERVICES:
        for argv in _command_lines(config["services"][name]):
            if argv[0] == "gunicorn":
                assert argv[1] == "calendar_sync.wsgi:application" and "-c" in argv
                conf = argv[argv.index("-c") + 1]
                check = subprocess.run(
                    [sys.executable, "-m", "gunicorn", "--check-config", "-c", conf, argv[1]],
                    cwd=ROOT, env=child_env(tmp_path), capture_output=True, text=True,
                    timeout=60)
                assert check.returncode == 0, check.stdout + check.stderr
                continue
            assert argv[:2] == ["python", "manage.py"], argv
            command, args = argv[2], argv[3:]
            assert command in commands, f"service {name}: no command {command!r}"
            parser = load_command_class(commands[command], command).create_parser(
                "manage.py", command)
            parser.parse_args(args)


def _dockerfile() -> list[str]:
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    return lines


def test_the_image_runs_as_an_unprivileged_user_with_a_health_check():
    lines = _dockerfile()
    assert lines[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    health = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert len(health) == 1 and "/webhooks/health/" in health[0]
    assert "EXPOSE 8000" in lines
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert "gunicorn.conf.py" in cmd and "calendar_sync.wsgi:application" in cmd


def test_requirements_are_installed_in_a_layer_before_the_code():
    lines = _dockerfile()
    copy_reqs = lines.index("COPY requirements.txt .")
    install = next(i for i, line in enumerate(lines) if "pip install -r requirements.txt" in line)
    copy_code = lines.index("COPY . .")
    assert copy_reqs < install < copy_code


def test_secrets_and_local_state_never_reach_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", "var", ".git"} <= ignored


def test_env_example_documents_every_variable_of_the_contract():
    contract = ROOT.parent / "shared" / "contract.md"
    names = {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "WEBHOOK_BASE_URL", "GOOGLE_CLIENT_ID",
             "GOOGLE_CLIENT_SECRET", "MS_CLIENT_ID", "MS_CLIENT_SECRET", "MS_TENANT",
             "WEBHOOK_ALERT_CHANNELS", "WEBHOOK_ALERT_EMAIL_RECIPIENTS", "SLACK_WEBHOOK_URL",
             "EXTERNAL_ALERT_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY", "METRICS_TOKEN",
             "LOG_FORMAT", "WEBHOOK_DEPLOYMENT_PHASE"}
    if contract.exists():  # keep up with the contract when it is at hand
        section = contract.read_text().split("Environment:")[1].split("##")[0]
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section)) - {
            "DATABASE_URL", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT",
            "REDIS_URL", "LOG_DIR"}  # set by docker-compose.yml itself
    example = (ROOT / ".env.example").read_text()
    missing = {n for n in names if not re.search(rf"^#? ?{n}=", example, flags=re.M)}
    assert not missing



def test_the_app_trusts_the_network_nginx_forwards_from():
    import ipaddress

    env = dict(re.findall(r"^(\w+)=(.*)$", (ROOT / ".env.example").read_text(), flags=re.M))

    def interpolate(value: str) -> str:  # ${NAME:-default}, as compose does
        return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], value)

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    subnets = [ipaddress.ip_network(interpolate(c["subnet"]))
               for c in compose["networks"]["edge"]["ipam"]["config"]]
    trusted = [ipaddress.ip_network(t.strip()) for t in interpolate(
        compose["x-app"]["environment"]["WEBHOOK_TRUSTED_PROXIES"]).split(",")]
    assert "edge" in compose["services"]["nginx"]["networks"]
    assert subnets and all(any(s.subnet_of(t) for t in trusted) for s in subnets)


@needs_compose
def test_the_worker_container_is_unhealthy_when_its_worker_stops_making_progress(
        config, tmp_path):
    worker = config["services"]["worker"]
    alive = worker["environment"]["WORKER_ALIVE_FILE"]
    test = worker["healthcheck"]["test"]
    assert not worker["healthcheck"].get("disable") and test[0] == "CMD-SHELL"
    script = test[1].replace("$$", "$").replace(alive, str(tmp_path / "alive"))

    def check() -> int:
        return subprocess.run(["sh", "-c", script], timeout=10).returncode

    assert check() != 0  # never touched: no step has succeeded
    (tmp_path / "alive").touch()
    assert check() == 0
    old = time.time() - 600
    os.utime(tmp_path / "alive", (old, old))
    assert check() != 0  # ten minutes without a successful step
