"""No provider quota is spent on forged ids: an orphan is acted on only when its mailbox is one
of ours, it was seen more than once, and within the account's daily budget; and the orphan rows
one source address can create are bounded."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from webhook_cases import change_item

from apps.webhooks.models import OrphanChannel
from apps.webhooks.services.subscriptions.orphans import stop_orphans
from tests.support.factories import connect_account
from tests.support.sandbox import call_count
from tests.support.subscriptions import lost_graph_creation, stray_graph_subscription

DELETES = "graph.subscriptions.delete"




@pytest.fixture
def graph_account(sandbox, receivers, user):
    """A Microsoft account with a failed subscription creation (an orphan's likely owner) and
    earlier notifications from its mailbox."""
    account, (calendar,), _ = connect_account(sandbox.url, user, "microsoft")
    return account, calendar, lost_graph_creation(sandbox.url, calendar)


def forged_batch(client, n: int, tenant: str = "", address: str = "198.51.100.7"):
    items = [{**change_item(str(uuid.uuid4()), "x", i), **({"tenantId": tenant} if tenant else {})}
             for i in range(n)]
    return client.post("/webhooks/microsoft/", data=json.dumps({"value": items}),
                       content_type="application/json", REMOTE_ADDR=address)


@pytest.mark.django_db(transaction=True)
def test_forged_ids_seen_twice_from_another_mailbox_cost_no_provider_call(sandbox, client,
                                                                         graph_account):
    for _ in range(2):
        OrphanChannel.objects.bulk_create([
            OrphanChannel(provider="microsoft", channel_id=str(uuid.uuid4()), hits=3,
                          tenant_id=str(uuid.uuid4()), resource_uri=f"Users/{uuid.uuid4()}/E/1")
            for _ in range(10)])
    before = call_count(sandbox.url, DELETES)

    summary = stop_orphans()

    assert summary.abandoned == 20
    assert call_count(sandbox.url, DELETES) == before


@pytest.mark.django_db(transaction=True)
def test_an_orphan_seen_once_is_never_acted_on_and_expires_after_a_day(sandbox, receivers,
                                                                      graph_account):
    account, calendar, mailbox = graph_account
    stray = stray_graph_subscription(sandbox, account.email, calendar.provider_calendar_id,
                                     receivers)
    OrphanChannel.objects.create(provider="microsoft", channel_id=stray, hits=1,
                                 tenant_id=mailbox["tenantId"], resource_uri=mailbox["resource"])
    before = call_count(sandbox.url, DELETES)

    assert stop_orphans().stopped == 0
    assert OrphanChannel.objects.get(channel_id=stray).status == "open"
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        assert stop_orphans().abandoned == 1
    assert call_count(sandbox.url, DELETES) == before


@pytest.mark.django_db(transaction=True)
def test_an_account_spends_at_most_its_daily_budget_on_orphans(sandbox, settings, graph_account):
    settings.WEBHOOK_ORPHAN_STOPS_PER_ACCOUNT_PER_DAY = 3
    account, calendar, mailbox = graph_account
    for _ in range(5):  # ids in our account's mailbox that Graph does not know (404)
        OrphanChannel.objects.create(provider="microsoft", channel_id=str(uuid.uuid4()), hits=2,
                                     tenant_id=mailbox["tenantId"],
                                     resource_uri=mailbox["resource"])
    before = call_count(sandbox.url, DELETES)

    summary = stop_orphans()

    assert call_count(sandbox.url, DELETES) - before == 3
    assert summary.abandoned == 3 and summary.retry == 2
    assert OrphanChannel.objects.open().count() == 2


@pytest.mark.django_db
def test_orphan_rows_per_source_address_are_bounded(client, settings):
    settings.WEBHOOK_ORPHANS_PER_SOURCE_PER_DAY = 30
    settings.WEBHOOK_RATE_LIMIT_MAX_REQUESTS = 1000
    for _ in range(5):
        forged_batch(client, 20)
    forged_batch(client, 20, address="203.0.113.9")

    # The first address's budget of 30 admits one batch of 20 (a batch is recorded whole or
    # not at all), the next four not; the other address is not held to that budget: its 20
    # are all kept.
    assert OrphanChannel.objects.count() == 20 + 20
