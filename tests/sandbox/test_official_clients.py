"""The sandbox driven by the providers' own Python clients, as a developer would point them at
it: Microsoft's Graph SDK (msgraph-sdk, async) and Google's API client
(google-api-python-client with google-auth), over plain HTTP on loopback. What the project's
Graph and Google subsets use: calendars, events, delta / sync tokens with paging, push
channels and subscriptions, token refresh."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.event import Event
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.subscription import Subscription
from msgraph.generated.users.item.calendars.item.calendar_view.delta.delta_request_builder import (  # noqa: E501
    DeltaRequestBuilder,
)
from msgraph.graph_request_adapter import options as SDK_MIDDLEWARE_OPTIONS
from msgraph_core import GraphClientFactory

from tests.support.sandbox_http import Api, Receiver

# The generated SDK warns about its own request-configuration classes on every call.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:msgraph"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:kiota_abstractions")]
WINDOW = {"start_date_time": "2024-01-01T00:00:00Z", "end_date_time": "2024-02-01T00:00:00Z"}


# --- Microsoft Graph --------------------------------------------------------------------------

class SandboxToken(AccessTokenProvider):
    """The SDK's documented way to bring a token of one's own (here the sandbox's)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_authorization_token(self, uri: str,
                                      additional_authentication_context: dict | None = None,
                                      ) -> str:
        return self.token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator(["127.0.0.1"])


@asynccontextmanager
async def graph_client(base_url: str, token: str) -> AsyncIterator[GraphServiceClient]:
    # The SDK's own middleware stack, as GraphRequestAdapter builds it, but ours to close.
    http = GraphClientFactory.create_with_default_middleware(options=SDK_MIDDLEWARE_OPTIONS)
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(SandboxToken(token)),
                                  client=http)
    adapter.base_url = f"{base_url}/v1.0"
    async with http:
        yield GraphServiceClient(request_adapter=adapter)


async def run_with_client(base_url: str, token: str, scenario) -> None:
    async with graph_client(base_url, token) as client:
        await scenario(client)


def _at(day: int, hour: int) -> DateTimeTimeZone:
    return DateTimeTimeZone(date_time=f"2024-01-{day:02d}T{hour:02d}:00:00", time_zone="UTC")


async def _delta_round(view, first_config=None) -> tuple[list[Event], str]:
    """Follow nextLinks from the first page to the deltaLink, as the SDK's users do."""
    page = await view.get(first_config)
    items = list(page.value)
    while page.odata_next_link:
        page = await view.with_url(page.odata_next_link).get()
        items += page.value
    return items, page.odata_delta_link


def test_graph_sdk_events_and_calendar_view_delta(graph) -> None:
    api, acct = graph

    async def scenario(client: GraphServiceClient) -> None:
        calendars = await client.me.calendars.get()
        assert [c.id for c in calendars.value] == [acct["calendars"][0]["id"]]
        calendar = client.me.calendars.by_calendar_id(calendars.value[0].id)
        created = [await calendar.events.post(Event(subject=f"e{n}", start=_at(5 + n, 10),
                                                    end=_at(5 + n, 11)))
                   for n in range(3)]
        config = RequestConfiguration(
            query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(**WINDOW),
        )
        config.headers.add("Prefer", "odata.maxpagesize=2")  # two pages: nextLink followed
        items, delta_link = await _delta_round(calendar.calendar_view.delta, config)
        assert [e.id for e in items] == [e.id for e in created]
        assert "/calendarView/delta()" in delta_link  # the SDK's function-call form

        await client.me.events.by_event_id(created[0].id).patch(Event(subject="moved"))
        await client.me.events.by_event_id(created[1].id).delete()
        page = await calendar.calendar_view.delta.with_url(delta_link).get()
        changed = {e.id: e for e in page.value}
        assert changed[created[0].id].subject == "moved"
        assert changed[created[1].id].additional_data["@removed"] == {"reason": "deleted"}

    asyncio.run(run_with_client(api.base_url, acct["access_token"], scenario))


def test_graph_sdk_subscription_lifecycle(graph, admin: Api, receiver: Receiver) -> None:
    api, acct = graph
    soon = datetime.now(UTC) + timedelta(hours=1)

    async def scenario(client: GraphServiceClient) -> None:
        created = await client.subscriptions.post(Subscription(
            change_type="created,updated,deleted", notification_url=receiver.url,
            resource="/me/events", expiration_date_time=soon, client_state="secret"))
        assert created.id and created.client_state == "secret"
        assert any(r.is_validation for r in receiver.received)  # Graph's handshake ran
        item = client.subscriptions.by_subscription_id(created.id)
        renewed = await item.patch(Subscription(expiration_date_time=soon + timedelta(hours=1)))
        assert renewed.expiration_date_time > created.expiration_date_time
        await item.reauthorize.post()
        assert [s.id for s in (await client.subscriptions.get()).value] == [created.id]
        await item.delete()
        with pytest.raises(ODataError) as gone:
            await item.get()
        assert gone.value.response_status_code == 404

    asyncio.run(run_with_client(api.base_url, acct["access_token"], scenario))


# --- Google Calendar --------------------------------------------------------------------------

def google_service(base_url: str, acct: dict[str, Any]):
    """No access token: google-auth refreshes one at the sandbox's token endpoint first."""
    credentials = Credentials(token=None, refresh_token=acct["refresh_token"],
                              token_uri=f"{base_url}/token", client_id="sandbox-client",
                              client_secret="sandbox-secret")
    return build("calendar", "v3", credentials=credentials, static_discovery=True,
                 cache_discovery=False, client_options={"api_endpoint": f"{base_url}/calendar/v3/"})


def test_google_client_events_sync_tokens_and_channels(google, receiver: Receiver) -> None:
    api, acct = google
    service = google_service(api.base_url, acct)
    calendars = service.calendarList().list().execute()["items"]
    calendar_id = next(c["id"] for c in calendars if c.get("primary"))
    events = service.events()
    created = [events.insert(calendarId=calendar_id, body={
        "summary": f"e{n}", "start": {"dateTime": f"2024-01-0{5 + n}T10:00:00Z"},
        "end": {"dateTime": f"2024-01-0{5 + n}T11:00:00Z"}}).execute() for n in range(3)]

    request, items = events.list(calendarId=calendar_id, maxResults=2), []
    while request is not None:  # the client's own pager (pageToken)
        page = request.execute()
        items += page["items"]
        request = events.list_next(request, page)
    assert [e["id"] for e in items] == [e["id"] for e in created]

    events.patch(calendarId=calendar_id, eventId=created[0]["id"],
                 body={"summary": "moved"}).execute()
    changed = events.list(calendarId=calendar_id, syncToken=page["nextSyncToken"]).execute()
    assert [(e["id"], e["summary"]) for e in changed["items"]] == [(created[0]["id"], "moved")]

    channel = events.watch(calendarId=calendar_id, body={
        "id": "sdk-channel", "type": "web_hook", "address": receiver.url,
        "token": "secret"}).execute()
    assert channel["id"] == "sdk-channel" and channel["resourceId"]
    service.channels().stop(body={"id": channel["id"],
                                  "resourceId": channel["resourceId"]}).execute()
    service.close()
