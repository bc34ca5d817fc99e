"""Every shared fixture, registered once for the whole suite (``pytest_plugins`` in the root
conftest). Importable without Django configured: the sandbox's own tests run without it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.sandbox_http import Api, Receiver, start_receiver


@pytest.fixture(scope="session", autouse=True)
def _var_dir(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What the code writes under VAR_DIR / LOG_DIR (the offline incident store, a child
    process's logs) goes to a temporary directory, never into the checkout's var/."""
    var = tmp_path_factory.mktemp("var")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAR_DIR", str(var))
        patch.setenv("LOG_DIR", str(var / "log"))
        if request.config.pluginmanager.hasplugin("django"):
            from django.conf import settings

            patch.setattr(settings, "VAR_DIR", var)
            patch.setattr(settings, "LOG_DIR", str(var / "log"))
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
def _clear_cache(request: pytest.FixtureRequest) -> Iterator[None]:
    """Forget what earlier tests cached, in the cache and in this process (the receivers'
    memories: a database or cache failure one test caused never leaks into the next)."""
    if not request.config.pluginmanager.hasplugin("django"):
        yield
        return
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
    """The provider sandbox, in this process on a free loopback port, for the whole run."""
    from sandbox.server import SandboxServer

    srv = SandboxServer(host="127.0.0.1", port=0, seed=0).start()
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
def sandbox_admin(sandbox) -> Api:
    """The sandbox's admin API (accounts, faults, state)."""
    return Api(sandbox.url)


@pytest.fixture
def make_receiver() -> Iterator[Callable[[], Receiver]]:
    """make_receiver() -> a webhook endpoint on a free loopback port (see ``Receiver``)."""
    servers: list[ThreadingHTTPServer] = []

    def make() -> Receiver:
        receiver, server = start_receiver()
        servers.append(server)
        return receiver

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(make_receiver: Callable[[], Receiver]) -> Receiver:
    """A webhook endpoint that echoes Graph validation tokens and answers the rest."""
    return make_receiver()


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


@pytest.fixture
def connect(sandbox, user, db) -> Callable[..., Any]:
    """connect("google", email, ["Work", "Home"]) -> (CalendarAccount, RemoteAccount): a new
    sandbox account connected through the product's own connect service (token exchange,
    calendar listing), for the tests of that path and of the provider clients."""
    from apps.calendars.services.accounts import connect_account
    from tests.support.sandbox import remote_account

    def _connect(provider: str, email: str = "", calendars: Any = 1):
        remote = remote_account(sandbox.url, provider,
                                email or f"{provider}.user@example.com", calendars)
        return connect_account(user, provider, remote.email, remote.refresh_token), remote

    return _connect


@pytest.fixture
def api_calls(db) -> Callable[..., list[tuple[str, int | None, str]]]:
    """api_calls(**filters) -> (operation, status, error_kind) of the recorded provider calls,
    oldest first."""
    from apps.monitoring.models import ProviderApiCall

    def _calls(**filters: Any) -> list[tuple[str, int | None, str]]:
        return list(ProviderApiCall.objects.filter(**filters).order_by("id")
                    .values_list("operation", "status_code", "error_kind"))

    return _calls
