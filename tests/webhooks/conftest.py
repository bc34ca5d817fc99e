"""Fixtures shared by the webhook tests (opt-in: none is autouse)."""

from __future__ import annotations

import pytest
from subscription_support import push_address_nowhere


@pytest.fixture
def push_nowhere(sandbox, settings) -> str:
    """WEBHOOK_BASE_URL pointed at a sandbox sink the provider gives up on at once, for tests
    that create channels but need no notification delivered."""
    settings.WEBHOOK_BASE_URL = push_address_nowhere(sandbox.url)
    return settings.WEBHOOK_BASE_URL
