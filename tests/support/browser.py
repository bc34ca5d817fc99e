"""Headless Chromium for the tests that check a page as a browser draws it (marked ``browser``,
left out of `make test-fast`; skipped only when Chromium is absent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

CHROMIUM_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
    pytest.mark.urls("tests.support.browser_urls"),  # adds a test-only sign-in
    pytest.mark.django_db(transaction=True),  # the live server reads the test's rows
]


def in_chromium(test):
    """Mark one test as run in Chromium (a module: ``pytestmark = CHROMIUM_MARKS``)."""
    for mark in CHROMIUM_MARKS:
        test = mark(test)
    return test


def signed_in(live_server, user, page: str) -> str:
    """The URL that signs ``user`` in and lands on ``page``."""
    return f"{live_server.url}/__test__/sign-in/?user={user.username}&next={quote(page)}"


def chromium(profile: Path, url: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--window-size=1400,2000", *flags, url],
        capture_output=True, text=True, timeout=90,
    )
