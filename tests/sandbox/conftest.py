"""Fixtures for the provider sandbox's own tests: the session's server reset per test with
pushes retried quickly, and authenticated clients.

No Django here: run alone with `pytest -p no:django --confcutdir=tests/sandbox tests/sandbox`,
or as part of the full suite.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# `pytest -p no:django` does not put the repository root on sys.path (pytest-django does).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from sandbox.server import SandboxServer  # noqa: E402
from tests.support.sandbox_http import Api  # noqa: E402

if "tests.support.fixtures" not in sys.modules:
    # Run alone, without the root conftest that registers the shared fixtures for the suite.
    from tests.support.fixtures import make_receiver, receiver, sandbox_server  # noqa: F401


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[SandboxServer]:
    """The session's sandbox, wiped, with push retries fast enough for tests."""
    sandbox_server.reset()
    sandbox_server.faults.update({"push_retry_base_seconds": 0.05,
                                  "notification_batch_ms": 50})
    yield sandbox_server
    sandbox_server.reset()


@pytest.fixture
def admin(sandbox: SandboxServer) -> Api:
    return Api(sandbox.url)


@pytest.fixture
def google(admin: Api) -> tuple[Api, dict[str, Any]]:
    """An authenticated Google client and its account (two calendars; the primary id is the
    e-mail)."""
    acct = admin.account("google", "alice@example.com", calendars=2)
    return Api(admin.base_url, acct["access_token"]), acct


@pytest.fixture
def graph(admin: Api) -> tuple[Api, dict[str, Any]]:
    acct = admin.account("microsoft", "bob@example.com")
    return Api(admin.base_url, acct["access_token"]), acct
