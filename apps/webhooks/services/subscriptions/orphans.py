"""Orphans: channels that notify us but that we do not know (the receivers record them).

Only the account that created a channel can stop it, so an orphan is stopped when its owner
can be identified from our subscription history: a subscription (any status) with the same
channel id (an old channel that still notifies), or, for Google, the same resource id (the
resource id is stable per calendar, so it names the calendar and hence its account). A Graph
id never seen is tried with the accounts that had a failed creation shortly before and whose
own notifications came from the same tenant and mailbox (``Users/{id}/``): anyone can post a
random id, so an id that names no mailbox of ours costs no provider call.

Provider quota is spent only on orphans seen more than once (a stray channel keeps notifying,
a forged id is typically seen once; those left to expire after a day), and at most
``WEBHOOK_ORPHAN_STOPS_PER_ACCOUNT_PER_DAY`` calls per account. The candidates are tried in
turn; a provider 404 means "not this one, or already gone". An orphan whose owner cannot be
found, or that no candidate can stop, is left to expire (Google channels and Graph
subscriptions all lapse within days) and counted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from apps.calendars.models import CalendarAccount
from apps.calendars.providers.clients import get_client
from apps.calendars.providers.errors import (
    AuthRevoked,
    NotFound,
    ProviderError,
    RateLimited,
    Transient,
)
from apps.webhooks.models import OrphanChannel, WebhookNotification, WebhookSubscription
from apps.webhooks.services.receiving.ratelimit import within_budget
from apps.webhooks.services.subscriptions.push_channels import handle_auth_revoked

log = logging.getLogger(__name__)

# Bounds on one maintenance run: orphans looked at, and accounts tried per orphan.
ORPHANS_PER_RUN = 500
ACCOUNTS_PER_ORPHAN = 5
BUDGET_WINDOW_SECONDS = 24 * 3600
# The mailbox part of a Graph notification's resource ("Users/{id}/Events/{id}").
MAILBOX = re.compile(r"users/[^/]+/", re.I)


@dataclass
class OrphanSummary:
    stopped: int = 0
    abandoned: int = 0
    retry: int = 0  # provider unavailable: tried again next run
    known: int = 0  # recorded during a creation race; the channel is ours after all


def _owner_match(orphan: OrphanChannel) -> Q:
    match = Q(channel_id=orphan.channel_id)
    if orphan.provider == "google" and orphan.resource_id:
        return match | Q(resource_id=orphan.resource_id)
    if orphan.provider == "microsoft" and not WebhookSubscription.objects.filter(match).exists():
        # A Graph id we never learnt: most likely a creation whose answer was lost. Its owner
        # is among the accounts with a failed attempt within a subscription lifetime before,
        # and its mailbox is one those accounts have been notified about.
        lifetime = timedelta(minutes=settings.WEBHOOK_GRAPH_SUBSCRIPTION_MINUTES)
        return (Q(updated_at__gte=orphan.first_seen_at - lifetime) & ~Q(last_error="")
                & Q(calendar__calendar_account__in=_mailbox_accounts(orphan)))
    return match


def _mailbox_accounts(orphan: OrphanChannel) -> list[int]:
    """Accounts whose own Graph notifications came from the orphan's tenant and mailbox."""
    mailbox = MAILBOX.match(orphan.resource_uri)
    if not orphan.tenant_id or not mailbox:
        return []
    return list(
        WebhookNotification.objects.filter(
            provider="microsoft", payload__tenantId=orphan.tenant_id,
            payload__resource__istartswith=mailbox.group(0))
        .values_list("subscription__calendar__calendar_account", flat=True).distinct()[:10])


def candidate_accounts(orphan: OrphanChannel) -> list[CalendarAccount]:
    """Usable accounts that may own the orphan, most recently active first."""
    owners = (
        WebhookSubscription.objects.filter(_owner_match(orphan), provider=orphan.provider)
        .values("calendar__calendar_account")
        .annotate(latest=Max("updated_at"))
        .order_by("-latest")
        .values_list("calendar__calendar_account", flat=True)[:ACCOUNTS_PER_ORPHAN]
    )
    owner_ids = list(owners)
    accounts = CalendarAccount.objects.in_bulk(owner_ids)
    return [accounts[i] for i in owner_ids
            if i in accounts and accounts[i].status == CalendarAccount.Status.ACTIVE]


def _resource_id(orphan: OrphanChannel) -> str:
    if orphan.resource_id:
        return orphan.resource_id
    known = WebhookSubscription.objects.filter(
        provider=orphan.provider, channel_id=orphan.channel_id).values_list("resource_id",
                                                                           flat=True).first()
    return known or ""


def _resolve(orphan: OrphanChannel, status: str) -> None:
    orphan.status = status
    orphan.resolved_at = timezone.now()
    orphan.save(update_fields=["status", "resolved_at"])


def _within_budget(account: CalendarAccount) -> bool:
    """Spend one of the account's daily orphan stop calls (none when the cache cannot say)."""
    return within_budget("orphan-stops", str(account.pk), 1,
                         settings.WEBHOOK_ORPHAN_STOPS_PER_ACCOUNT_PER_DAY,
                         window=BUDGET_WINDOW_SECONDS, fail_open=False)


def stop_orphan(orphan: OrphanChannel) -> str:
    """Try to stop one orphan. Returns 'stopped', 'abandoned', 'retry' or 'known'."""
    if WebhookSubscription.objects.accepting().filter(
            provider=orphan.provider, channel_id=orphan.channel_id).exists():
        orphan.delete()  # it notified before its creation had been recorded: not an orphan
        return "known"
    resource_id = _resource_id(orphan)
    over_budget = False
    for account in candidate_accounts(orphan):
        if not _within_budget(account):
            over_budget = True
            continue
        try:
            get_client(account).stop(orphan.channel_id, resource_id)
        except NotFound:
            continue
        except AuthRevoked as exc:
            handle_auth_revoked(account, exc)
            continue
        except (RateLimited, Transient) as exc:
            log.info("orphan %s: provider unavailable (%s), retrying next run", orphan.pk,
                     exc.kind)
            return "retry"
        except ProviderError:
            continue
        _resolve(orphan, OrphanChannel.Status.STOPPED)
        log.info("orphan %s %s stopped with account %s", orphan.provider, orphan.pk, account.pk)
        return "stopped"
    if over_budget:
        log.info("orphan %s %s: account budget spent for today, retrying later",
                 orphan.provider, orphan.pk)
        return "retry"
    _resolve(orphan, OrphanChannel.Status.ABANDONED)
    log.info("orphan %s %s left to expire: no account could stop it", orphan.provider, orphan.pk)
    return "abandoned"


def stop_orphans(dry_run: bool = False) -> OrphanSummary:
    """Stop (or abandon) the open orphans. A dry run counts, per orphan, whether an owner
    can be identified ('stopped') or not ('abandoned') without calling the provider."""
    summary = OrphanSummary()
    if not dry_run:
        summary.known += _forget_known()
        summary.abandoned += _abandon_unrepeated()
    open_orphans = OrphanChannel.objects.open().seen_repeatedly()
    for orphan in open_orphans.order_by("first_seen_at")[:ORPHANS_PER_RUN]:
        if dry_run:
            outcome = "stopped" if candidate_accounts(orphan) else "abandoned"
        else:
            outcome = stop_orphan(orphan)
        setattr(summary, outcome, getattr(summary, outcome) + 1)
    return summary


def _abandon_unrepeated() -> int:
    """Orphans seen once and not again within a day: most likely forged, never acted on."""
    cutoff = timezone.now() - timedelta(seconds=BUDGET_WINDOW_SECONDS)
    return (OrphanChannel.objects.open().filter(hits__lt=2, last_seen_at__lt=cutoff)
            .update(status=OrphanChannel.Status.ABANDONED, resolved_at=timezone.now()))


def _forget_known() -> int:
    """Orphans whose channel is live after all (it notified before its creation had been
    recorded): not orphans, whatever their sightings. No provider call."""
    live = WebhookSubscription.objects.accepting().filter(provider=OuterRef("provider"),
                                                          channel_id=OuterRef("channel_id"))
    deleted, _ = OrphanChannel.objects.open().filter(Exists(live)).delete()
    return deleted
