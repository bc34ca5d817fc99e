"""Orphans: channels that notify us but that we do not know (the receivers record them).

Only the account that created a channel can stop it, so an orphan is stopped when its owner
can be identified from our subscription history: a subscription (any status) with the same
channel id (an old channel that still notifies), or, for Google, the same resource id (the
resource id is stable per calendar, so it names the calendar and hence its account). A Graph
id never seen is tried with the accounts that had a failed creation shortly before. The
candidates are tried in turn; a provider 404 means "not this one, or already gone". An orphan
whose owner cannot be found, or that no candidate can stop, is left to expire (Google
channels and Graph subscriptions all lapse within days) and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Max, Q
from django.utils import timezone

from apps.calendars.models import CalendarAccount
from apps.calendars.providers import get_client
from apps.calendars.providers.errors import (
    AuthRevoked,
    NotFound,
    ProviderError,
    RateLimited,
    Transient,
)
from apps.webhooks.models import OrphanChannel, WebhookSubscription
from apps.webhooks.services.channels import LIVE, handle_auth_revoked

log = logging.getLogger(__name__)

# Bounds on one maintenance run: orphans looked at, and accounts tried per orphan.
ORPHANS_PER_RUN = 500
ACCOUNTS_PER_ORPHAN = 5


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
        # is among the accounts with a failed attempt within a subscription lifetime before.
        lifetime = timedelta(minutes=settings.WEBHOOK_GRAPH_SUBSCRIPTION_MINUTES)
        return Q(updated_at__gte=orphan.first_seen_at - lifetime) & ~Q(last_error="")
    return match


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


def stop_orphan(orphan: OrphanChannel) -> str:
    """Try to stop one orphan. Returns 'stopped', 'abandoned', 'retry' or 'known'."""
    if WebhookSubscription.objects.filter(provider=orphan.provider, channel_id=orphan.channel_id,
                                          status__in=LIVE).exists():
        orphan.delete()  # it notified before its creation had been recorded: not an orphan
        return "known"
    resource_id = _resource_id(orphan)
    for account in candidate_accounts(orphan):
        try:
            get_client(account).stop(orphan.channel_id, resource_id)
        except NotFound:
            continue
        except AuthRevoked:
            handle_auth_revoked(account)
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
    _resolve(orphan, OrphanChannel.Status.ABANDONED)
    log.info("orphan %s %s left to expire: no account could stop it", orphan.provider, orphan.pk)
    return "abandoned"


def stop_orphans(dry_run: bool = False) -> OrphanSummary:
    """Stop (or abandon) the open orphans. A dry run counts, per orphan, whether an owner
    can be identified ('stopped') or not ('abandoned') without calling the provider."""
    summary = OrphanSummary()
    open_orphans = OrphanChannel.objects.filter(status=OrphanChannel.Status.OPEN)
    for orphan in open_orphans.order_by("first_seen_at")[:ORPHANS_PER_RUN]:
        if dry_run:
            outcome = "stopped" if candidate_accounts(orphan) else "abandoned"
        else:
            outcome = stop_orphan(orphan)
        setattr(summary, outcome, getattr(summary, outcome) + 1)
    return summary
