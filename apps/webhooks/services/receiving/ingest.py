"""Storing what the receivers accepted, and counting what they did not.

The inbound ``WebhookNotification`` row is the worker's queue, so storing is the only thing a
receiver must get right before it answers: each batch is one transaction, and the receiver
builds its 2xx only after that transaction has committed. Deduplication relies on the unique
``dedup_key``. On PostgreSQL a request is one ``INSERT … ON CONFLICT DO NOTHING`` statement
(``store_statement``) that also moves the subscriptions forward and wakes the worker — one
round trip, its own transaction — whether it carries one notification (every Google one) or a
Graph batch. On SQLite (development) each row is one INSERT in a savepoint, and a concurrent
redelivery loses the race with an IntegrityError, which we read as "duplicate" (after checking
that the key really is there).

What is not stored is counted by ``counters``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, Case, F, Q, Value, When
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from apps.webhooks.models import SubscriptionQuerySet, WebhookNotification, WebhookSubscription
from apps.webhooks.services.queue.wakeup import NOTIFY_CHANNEL
from apps.webhooks.services.receiving.store_statement import (
    SWITCHED_OFF_ERROR,
    NewNotification,
    batch_params,
    execute_store,
    execute_store_batch,
    row_params,
)
from apps.webhooks.services.subscriptions import subscription_cache
from apps.webhooks.services.subscriptions.subscription_cache import StaleSubscription
from apps.webhooks.services.ttl_cache import TTLCache

NOTIFY_MIN_INTERVAL_SECONDS = 0.05
# last_notification_at ("when did we last hear from this channel", read by the silent-channel
# check and the dashboard) moves in steps of this many seconds. Rewriting it on every
# notification would make each one a non-HOT update of the subscription row (the column is
# indexed), i.e. a new entry in every one of the table's indexes; this way most updates touch
# last_message_number only, or nothing.
LAST_HEARD_RESOLUTION_SECONDS = 60
_notify_gate = TTLCache(max_entries=1)


# Only what authentication and the status check need.
LOOKUP_FIELDS = ("id", "provider", "channel_id", "status", "resource_id", "token_digest")
LOOKUP_CHUNK = 500  # ids per query: far below every backend's parameter limit


def subscriptions_for(provider: str, channel_ids: Iterable[str], *,
                      use_cache: bool = False) -> dict[str, WebhookSubscription]:
    """The known subscriptions among ``channel_ids``, by channel id.

    With ``use_cache`` (PostgreSQL only, where the storing statement re-checks what it relies
    on) recently read subscriptions come from ``subscription_cache``. The query is plain SQL
    rather than a queryset: it runs for every notification, and compiling the equivalent
    queryset costs about four times the query itself (~0.55 ms vs ~0.12 ms of CPU).
    """
    use_cache = use_cache and connection.vendor == "postgresql"
    found: dict[str, WebhookSubscription] = {}
    ids = []
    for channel_id in sorted(set(channel_ids)):
        hit = subscription_cache.get(provider, channel_id) if use_cache else None
        if hit is None:
            ids.append(channel_id)
        else:
            found[channel_id] = hit
    qn = connection.ops.quote_name
    meta = WebhookSubscription._meta
    # from_db() wants the values in model field order.
    fields = [f for f in meta.concrete_fields if f.attname in LOOKUP_FIELDS]
    names = [f.attname for f in fields]
    columns = ", ".join(qn(f.column) for f in fields)
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start:start + LOOKUP_CHUNK]
        sql = (f"SELECT {columns} FROM {qn(meta.db_table)} WHERE provider = %s "
               f"AND channel_id IN ({', '.join(['%s'] * len(chunk))})")
        with connection.cursor() as cursor:
            cursor.execute(sql, [provider, *chunk])
            rows = cursor.fetchall()
        for row in rows:
            subscription = WebhookSubscription.from_db(connection.alias, names, row)
            found[subscription.channel_id] = subscription
            if use_cache and subscription.status in SubscriptionQuerySet.ACCEPTING:
                subscription_cache.put(subscription)
    return found


def store(batch: Sequence[NewNotification], *, ignored: bool = False) -> list[bool]:
    """Commit ``batch``; return, per item, True if stored and False if it was a duplicate.

    With ``ignored`` (kill switch) the rows are stored already marked ``ignored``: acknowledged
    and kept for the record, never processed. Raises DatabaseError if nothing could be
    committed; the caller must then not acknowledge.
    """
    now = timezone.now()
    if connection.vendor != "postgresql":
        return store_each(batch, now, ignored)
    if len(batch) == 1:
        return [_store_one_postgresql(batch[0], now, ignored)]
    return _store_batch_postgresql(batch, now, ignored) if batch else []


def _first_occurrences(batch: Sequence[NewNotification]) -> list[bool]:
    """False for an item whose dedup key came earlier in the batch (Graph often repeats an
    item within one batch)."""
    seen: set[str] = set()
    first = []
    for item in batch:
        first.append(item.dedup_key not in seen)
        seen.add(item.dedup_key)
    return first


def store_each(batch: Sequence[NewNotification], now: datetime, ignored: bool) -> list[bool]:
    """``store`` with one INSERT per row in one transaction: SQLite (development)."""
    first = _first_occurrences(batch)
    with transaction.atomic(durable=True):
        results = [new and _insert_unless_duplicate(item, now, ignored)
                   for item, new in zip(batch, first, strict=True)]
        stored = [item for item, new in zip(batch, results, strict=True) if new]
        _advance(stored, now)
        if stored and not ignored:
            _notify_worker()
    return results


def _store_one_postgresql(item: NewNotification, now: datetime, ignored: bool) -> bool:
    """The hot path (every Google notification) as ONE statement, so one round trip.

    A statement outside a transaction block is its own transaction: when execute() returns it
    has committed (and was flushed), exactly what a durable acknowledgement needs, without
    the BEGIN and COMMIT round trips of transaction.atomic(). ``ON CONFLICT DO NOTHING`` waits
    for a concurrent insert of the same key and then reports it as a duplicate (no row
    returned), so there is no IntegrityError race to catch. The row is inserted only if the
    subscription still has the id, channel, token digest and resource id the receiver
    authenticated against, and an accepting status (else ``StaleSubscription``: the caller
    redoes the request from the database). The subscription UPDATE and the NOTIFY only happen
    when the row was new. The statement and its parameters live in ``store_statement``.
    """
    sub = item.subscription
    params = [sub.pk, sub.channel_id, sub.token_digest, sub.resource_id]
    params += row_params(item, now, ignored)
    cutoff = now - timedelta(seconds=LAST_HEARD_RESOLUTION_SECONDS)
    numbered = item.message_number is not None
    number = [item.message_number] if numbered else []
    params += [cutoff, now, *number, *number, sub.pk, cutoff, *number]
    shape = (numbered, not ignored and _notify_due())
    # Inside a caller's transaction the row would commit after our 2xx: durable=True refuses
    # that (test cases' own transactions are allowed).
    guard = transaction.atomic(durable=True) if connection.in_atomic_block else nullcontext()
    with guard, connection.cursor() as cursor:
        execute_store(cursor, shape, params)
        inserted, still_valid = cursor.fetchone()[:2]
    if not still_valid:
        subscription_cache.forget(sub.provider, sub.channel_id)
        raise StaleSubscription(sub.channel_id)
    return inserted == 1


def _store_batch_postgresql(batch: Sequence[NewNotification], now: datetime,
                            ignored: bool) -> list[bool]:
    """A Graph batch as ONE statement (``store_statement``), with the single path's
    guarantees: committed when execute() returns, duplicates reported as such, subscriptions
    moved forward only, the worker woken. ``StaleSubscription`` if a subscription changed
    since the receiver read it: the rows of the others are committed all the same (a redo of
    the request finds them as duplicates), so no acknowledged item depends on that redo."""
    first = _first_occurrences(batch)
    unique = [item for item, new in zip(batch, first, strict=True) if new]
    cutoff = now - timedelta(seconds=LAST_HEARD_RESOLUTION_SECONDS)
    params = batch_params(unique, now, ignored, cutoff)
    guard = transaction.atomic(durable=True) if connection.in_atomic_block else nullcontext()
    with guard, connection.cursor() as cursor:
        execute_store_batch(cursor, not ignored and _notify_due(), params)
        inserted, still_valid = cursor.fetchone()[:2]
    subscriptions = {item.subscription.pk: item.subscription for item in unique}
    if still_valid != len(subscriptions):
        for sub in subscriptions.values():
            subscription_cache.forget(sub.provider, sub.channel_id)
        raise StaleSubscription(", ".join(sub.channel_id for sub in subscriptions.values()))
    new_keys = set(inserted)
    return [new and item.dedup_key in new_keys for item, new in zip(batch, first, strict=True)]


def _new_row(item: NewNotification, now: datetime, ignored: bool) -> WebhookNotification:
    status = WebhookNotification.Status.IGNORED if ignored else WebhookNotification.Status.PENDING
    return WebhookNotification(
        subscription=item.subscription,
        provider=item.subscription.provider,
        kind=item.kind,
        received_at=now,
        resource_state=item.resource_state,
        message_number=item.message_number,
        dedup_key=item.dedup_key,
        headers=item.headers,
        payload=item.payload,
        processing_status=status,
        processed_at=now if ignored else None,
        error=SWITCHED_OFF_ERROR if ignored else "",
    )


def _insert_unless_duplicate(item: NewNotification, now: datetime, ignored: bool) -> bool:
    try:
        with transaction.atomic():  # a savepoint: a duplicate must not abort the batch
            _new_row(item, now, ignored).save(force_insert=True)
        return True
    except IntegrityError:
        if _exists(item.dedup_key):
            return False
        raise


def _exists(dedup_key: str) -> bool:
    return WebhookNotification.objects.filter(dedup_key=dedup_key).exists()


def _advance(stored: Sequence[NewNotification], now: datetime) -> None:
    """Move each subscription's last_notification_at / last_message_number forward only.

    One conditional UPDATE per subscription, evaluated on the row as locked by the UPDATE
    itself, so two concurrent receivers can never move a value backwards (no
    read-modify-write). Subscriptions are updated in id order so batches cannot deadlock.
    last_notification_at moves in steps of LAST_HEARD_RESOLUTION_SECONDS (see there).
    """
    highest: dict[int, int | None] = {}
    for item in stored:
        number = item.message_number
        previous = highest.get(item.subscription.pk)
        if previous is None or (number is not None and number > previous):
            highest[item.subscription.pk] = number
    cutoff = now - timedelta(seconds=LAST_HEARD_RESOLUTION_SECONDS)
    stale = Q(last_notification_at__isnull=True) | Q(last_notification_at__lt=cutoff)
    for pk in sorted(highest):
        changes = {"last_notification_at": Case(When(stale, then=Value(now)),
                                                default=F("last_notification_at"))}
        behind = stale
        if highest[pk] is not None:
            number = Value(highest[pk], output_field=BigIntegerField())
            changes["last_message_number"] = Greatest(
                Coalesce(F("last_message_number"), number), number
            )
            behind |= Q(last_message_number__isnull=True) | Q(last_message_number__lt=highest[pk])
        WebhookSubscription.objects.filter(behind, pk=pk).update(**changes)


def _notify_worker() -> None:
    if connection.vendor == "postgresql" and _notify_due():
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")


def _notify_due() -> bool:
    """At most one NOTIFY per NOTIFY_MIN_INTERVAL_SECONDS per process.

    NOTIFY takes a database-wide lock that is held until the transaction's commit record is
    flushed, so notifying transactions commit one fsync at a time instead of being grouped:
    notifying on every insert caps the receivers at one commit per fsync. One wake-up per
    interval is enough: the worker drains everything pending once awake, and polls every
    WORKER_IDLE_POLL_SECONDS anyway, which bounds the delay of a notification whose wake-up
    was skipped.
    """
    return _notify_gate.add("notify", True, NOTIFY_MIN_INTERVAL_SECONDS)


def confirm(subscription: WebhookSubscription) -> None:
    """A Google ``sync`` message: the channel works. Sets confirmed_at once; pending → active.

    A single UPDATE, so it is safe against the subscription manager saving the same row
    concurrently (it may still be waiting for the watch response). Like storing, it applies
    only if the row still matches what the receiver authenticated against."""
    now = timezone.now()
    updated = WebhookSubscription.objects.accepting().filter(
        pk=subscription.pk, channel_id=subscription.channel_id,
        token_digest=subscription.token_digest, resource_id=subscription.resource_id,
    ).update(
        confirmed_at=Coalesce(F("confirmed_at"), Value(now)),
        status=Case(
            When(status=WebhookSubscription.Status.PENDING,
                 then=Value(WebhookSubscription.Status.ACTIVE)),
            default=F("status"),
        ),
        updated_at=now,
    )
    if not updated:
        subscription_cache.forget(subscription.provider, subscription.channel_id)
        raise StaleSubscription(subscription.channel_id)
