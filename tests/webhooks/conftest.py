"""Fixtures shared by the webhook tests (opt-in: none is autouse)."""

from __future__ import annotations

import pytest

from tests.support.sandbox import push_address_nowhere


@pytest.fixture
def push_nowhere(sandbox, settings) -> str:
    """WEBHOOK_BASE_URL pointed at a sandbox sink the provider gives up on at once, for tests
    that create channels but need no notification delivered."""
    settings.WEBHOOK_BASE_URL = push_address_nowhere(sandbox.url)
    return settings.WEBHOOK_BASE_URL


@pytest.fixture
def receivers(live_server, settings) -> str:
    """The receivers on a live server, where new channels deliver (WEBHOOK_BASE_URL)."""
    settings.WEBHOOK_BASE_URL = live_server.url
    return live_server.url
