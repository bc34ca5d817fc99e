"""Shared fixtures. The suite talks to real PostgreSQL and Redis: if either is unreachable the
run stops with an error (never a silent skip)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from django.conf import settings as django_settings


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    db = django_settings.DATABASES["default"]
    redis = urlparse(getattr(django_settings, "REDIS_URL", "redis://127.0.0.1:6379/15"))
    missing = []
    if db["ENGINE"].endswith("postgresql") and not _reachable(db["HOST"] or "127.0.0.1",
                                                             int(db["PORT"] or 5432)):
        missing.append(f"PostgreSQL at {db['HOST']}:{db['PORT']}")
    if not _reachable(redis.hostname or "127.0.0.1", redis.port or 6379):
        missing.append(f"Redis at {redis.hostname}:{redis.port}")
    if missing:
        pytest.exit("required services unreachable: " + ", ".join(missing), returncode=3)


@pytest.fixture(scope="session", autouse=True)
def _var_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What the code writes under VAR_DIR / LOG_DIR (the offline incident store, a child
    process's logs) goes to a temporary directory, never into the checkout's var/."""
    var = tmp_path_factory.mktemp("var")
    with pytest.MonkeyPatch.context() as patch:
        for name, path in (("VAR_DIR", var), ("LOG_DIR", var / "log")):
            patch.setattr(django_settings, name, path if name == "VAR_DIR" else str(path))
            patch.setenv(name, str(path))
        yield


def forget_test_cache_keys() -> None:
    """Delete only the keys under the test settings' KEY_PREFIX.

    ``cache.clear()`` would FLUSHDB the whole Redis database REDIS_URL names, which may be
    shared with a running service; the test keys carry their own prefix instead.
    """
    from django.core.cache import cache

    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")  # django-redis prefixes the pattern with KEY_PREFIX
    else:
        cache.clear()  # a per-process cache (locmem) holds nothing but this run's keys


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """Forget what earlier tests cached, in the cache and in this process (the receivers'
    memories: a database or cache failure one test caused never leaks into the next)."""
    from apps.webhooks.services.ttl_cache import reset_all

    forget_test_cache_keys()
    reset_all()
    yield
    reset_all()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup) -> Iterator[None]:
    """The health probe's pool threads keep their database sessions: close them before the
    test database is dropped."""
    yield
    from apps.webhooks.probes import close_sessions

    close_sessions()


@pytest.fixture(scope="session")
def sandbox_server():
    from sandbox.server import SandboxServer

    srv = SandboxServer(host="127.0.0.1", port=0, seed=1234).start()
    yield srv
    srv.stop()


@pytest.fixture
def sandbox(sandbox_server, settings):
    """The provider sandbox on loopback, reset, with every provider URL pointing at it."""
    sandbox_server.reset()
    url = sandbox_server.url
    settings.SANDBOX_URL = url
    settings.GOOGLE_API_BASE_URL = url
    settings.GOOGLE_OAUTH_BASE_URL = url
    settings.GOOGLE_TOKEN_URL = f"{url}/token"
    settings.MS_GRAPH_BASE_URL = url
    settings.MS_LOGIN_BASE_URL = url
    settings.PAGERDUTY_EVENTS_URL = f"{url}/v2/enqueue"
    yield sandbox_server
    sandbox_server.reset()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", "pw")


@pytest.fixture
def google_account(user):
    from apps.calendars.models import CalendarAccount

    return CalendarAccount.objects.create(
        user=user, provider="google", email="alice@example.com",
        access_token="ya29.access", refresh_token="1//refresh",
    )


@pytest.fixture
def google_calendar(google_account):
    from apps.calendars.models import Calendar

    return Calendar.objects.create(
        calendar_account=google_account, provider_calendar_id="primary", name="Alice"
    )
