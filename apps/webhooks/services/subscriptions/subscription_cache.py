"""What a receiver process last read about a subscription, kept briefly to skip the lookup.

Every Google notification needs the subscription's id, token digest, resource id and status
before it can be stored; reading them is a second statement per notification (measured: about
a quarter of the receiver's cost). This cache keeps them for WEBHOOK_SUBSCRIPTION_CACHE_SECONDS,
and it is never trusted blindly:

- the statement that stores a notification re-checks, in the same statement, that the row
  still has this id, channel, token digest and resource id, and an accepting status; if not,
  the entry is dropped and the request is redone from the database (``StaleSubscription``);
- a request that fails authentication against a cached entry is redone from the database too,
  so a re-issued token or a newly set resource id is honoured at once;
- only subscriptions that accept notifications are cached, and unknown channels never are
  (so an attacker cannot fill it); the size is bounded.
"""

from __future__ import annotations

from django.conf import settings

from apps.webhooks.models import WebhookSubscription
from apps.webhooks.services.ttl_cache import TTLCache

MAX_ENTRIES = 10_000
_entries = TTLCache(max_entries=MAX_ENTRIES)


class StaleSubscription(Exception):
    """What we knew about a subscription no longer holds: redo the request from the database."""


def get(provider: str, channel_id: str) -> WebhookSubscription | None:
    return _entries.get((provider, channel_id))


def put(subscription: WebhookSubscription) -> None:
    ttl = settings.WEBHOOK_SUBSCRIPTION_CACHE_SECONDS
    if ttl > 0:
        _entries.put((subscription.provider, subscription.channel_id), subscription, ttl)


def forget(provider: str, channel_id: str) -> None:
    _entries.forget((provider, channel_id))
