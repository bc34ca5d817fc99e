"""The receivers' storing statements for PostgreSQL: one round trip per request.

Check the subscription facts, INSERT the rows if new (``ON CONFLICT DO NOTHING``), move the
subscriptions forward, and NOTIFY the worker, all in one statement that is its own transaction:
one for a single notification (every Google one), one for a Graph batch (arrays of column
values, ``unnest``-ed). They are PREPAREd once per session (``WEBHOOK_PREPARED_STATEMENTS``),
and their parameters are built directly rather than through model instances: both were
measured as large shares of the receiver's cost. ``ingest`` decides which to use.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import ProgrammingError, connection

from apps.webhooks.models import SubscriptionQuerySet, WebhookNotification, WebhookSubscription
from apps.webhooks.services.queue.wakeup import NOTIFY_CHANNEL


@dataclass
class NewNotification:
    """One notification the receiver validated and wants queued."""

    subscription: WebhookSubscription
    kind: str  # WebhookNotification.Kind
    resource_state: str
    dedup_key: str
    message_number: int | None = None
    headers: dict = field(default_factory=dict)
    payload: dict = field(default_factory=dict)


_fast_sql: dict[tuple[bool, bool], str] = {}
_batch_sql: dict[bool, str] = {}
# Raw DB-API connection -> names of the storing statements PREPAREd in that session. A new
# (re)connection is a new object, so it is prepared again; a closed one drops out by itself.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()
UNDEFINED_PREPARED_STATEMENT = "26000"  # SQLSTATE invalid_sql_statement_name


def execute_store(cursor, shape: tuple[bool, bool], params: list) -> None:
    """Run the single-notification storing statement of this shape (numbered, notify)."""
    _execute(cursor, f"webhooks_store_{shape[0]:d}{shape[1]:d}", _fast_store_sql(*shape),
             params)


def execute_store_batch(cursor, notify: bool, params: list) -> None:
    """Run the batch storing statement (``batch_params()``)."""
    _execute(cursor, f"webhooks_store_batch_{notify:d}", _batch_store_sql(notify), params)


def _execute(cursor, name: str, sql: str, params: list) -> None:
    """Run ``sql``; PREPAREd once per session as ``name`` if enabled.

    Planning a combined statement costs PostgreSQL several times what executing it does;
    a prepared statement is planned once (a generic plan after a few executions). Sessions
    are per connection, which a PgBouncer in transaction mode does not keep: hence the
    WEBHOOK_PREPARED_STATEMENTS off-switch.
    """
    if not settings.WEBHOOK_PREPARED_STATEMENTS:
        cursor.execute(sql, params)
        return
    raw = connection.connection
    with _prepared_lock:
        names = _prepared.setdefault(raw, set())
    execute = f"EXECUTE {name}({', '.join(['%s'] * len(params))})"
    if name in names:
        try:
            cursor.execute(execute, params)
            return
        except ProgrammingError as exc:
            # The session lost it (DISCARD ALL, a pooler): prepare again, unless that would
            # run inside an aborted transaction.
            if connection.in_atomic_block or getattr(exc.__cause__, "pgcode", None) != (
                    UNDEFINED_PREPARED_STATEMENT):
                raise
            names.discard(name)
    cursor.execute(f"PREPARE {name} AS {_positional(sql)}")
    names.add(name)
    cursor.execute(execute, params)


def _positional(sql: str) -> str:
    """``%s`` placeholders as PREPARE's ``$1, $2, …`` (the statement has no other ``%``)."""
    parts = sql.split("%s")
    return "".join(part + (f"${i}" if i < len(parts) else "")
                   for i, part in enumerate(parts, start=1))


def _fast_store_sql(numbered: bool, notify: bool) -> str:
    """Check-facts + INSERT-if-new + forward-only subscription UPDATE (+ NOTIFY), built once
    per shape."""
    key = (numbered, notify)
    if key not in _fast_sql:
        qn = connection.ops.quote_name
        columns = _row_columns()
        notifications = qn(WebhookNotification._meta.db_table)
        subscriptions = qn(WebhookSubscription._meta.db_table)
        accepting = ", ".join(f"'{status}'" for status in sorted(SubscriptionQuerySet.ACCEPTING))
        advance = ("last_notification_at = CASE WHEN last_notification_at IS NULL OR "
                   "last_notification_at < %s THEN %s ELSE last_notification_at END")
        behind = "last_notification_at IS NULL OR last_notification_at < %s"
        if numbered:
            advance += (", last_message_number = "
                        "GREATEST(COALESCE(last_message_number, %s), %s)")
            behind += " OR last_message_number IS NULL OR last_message_number < %s"
        # A data-modifying WITH runs once, to completion, whether or not the SELECT reads it.
        _fast_sql[key] = (
            f"WITH sub AS (SELECT id FROM {subscriptions} WHERE id = %s AND channel_id = %s "
            f"AND token_digest = %s AND resource_id = %s AND status IN ({accepting})), "
            f"ins AS (INSERT INTO {notifications} "
            f"({', '.join(qn(column) for column, _ in columns)}) "
            f"SELECT {', '.join(value for _, value in columns)} FROM sub "
            f"ON CONFLICT (dedup_key) DO NOTHING RETURNING id), "
            f"adv AS (UPDATE {subscriptions} SET {advance} "
            f"WHERE id = %s AND EXISTS (SELECT 1 FROM ins) AND ({behind})) "
            f"SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM sub)"
            + (f", (SELECT count(pg_notify('{NOTIFY_CHANNEL}', '')) FROM ins)" if notify else "")
        )
    return _fast_sql[key]


def _batch_store_sql(notify: bool) -> str:
    """The batch as one statement: the same guarantees as ``_fast_store_sql``, for many rows.

    The subscriptions are checked and locked first, in id order, so concurrent batches cannot
    deadlock: the INSERT's filter is an InitPlan, which runs to completion before the first
    row is inserted. Only rows of subscriptions that still match are inserted (the caller
    redoes the request from the database when one did not). Each subscription moves forward
    once, to the highest message number of its new rows.
    """
    if notify not in _batch_sql:
        qn = connection.ops.quote_name
        notifications = qn(WebhookNotification._meta.db_table)
        subscriptions = qn(WebhookSubscription._meta.db_table)
        accepting = ", ".join(f"'{status}'" for status in sorted(SubscriptionQuerySet.ACCEPTING))
        by_column = {f.column: f for f in WebhookNotification._meta.concrete_fields}
        columns = _row_columns()
        arrays = [(qn(column), by_column[column].db_type(connection))
                  for column, value in columns if value == "%s"]
        facts = [(name, WebhookSubscription._meta.get_field(name).db_type(connection))
                 for name in FACT_COLUMNS]
        values = ", ".join(f"i.{qn(column)}" if value == "%s" else value
                           for column, value in columns)
        _batch_sql[notify] = (
            f"WITH f AS (SELECT * FROM {_unnest(facts)} AS f({', '.join(FACT_COLUMNS)})), "
            f"sub AS (SELECT s.id FROM {subscriptions} s JOIN f ON "
            + " AND ".join(f"s.{name} = f.{name}" for name in FACT_COLUMNS)
            + f" WHERE s.status IN ({accepting}) ORDER BY s.id FOR NO KEY UPDATE OF s), "
            f"i AS (SELECT * FROM {_unnest(arrays)} AS i({', '.join(c for c, _ in arrays)})), "
            f"ins AS (INSERT INTO {notifications} "
            f"({', '.join(qn(column) for column, _ in columns)}) "
            f"SELECT {values} FROM i WHERE i.subscription_id = ANY((SELECT array_agg(id) "
            f"FROM sub)::bigint[]) "
            f"ON CONFLICT (dedup_key) DO NOTHING "
            f"RETURNING dedup_key, subscription_id, message_number), "
            f"top AS (SELECT subscription_id AS id, max(message_number) AS number FROM ins "
            f"GROUP BY subscription_id), "
            f"adv AS (UPDATE {subscriptions} s SET last_notification_at = CASE WHEN "
            f"s.last_notification_at IS NULL OR s.last_notification_at < %s THEN %s "
            f"ELSE s.last_notification_at END, last_message_number = "
            f"GREATEST(COALESCE(s.last_message_number, top.number), top.number) "
            f"FROM top WHERE s.id = top.id AND (s.last_notification_at IS NULL "
            f"OR s.last_notification_at < %s OR top.number > s.last_message_number "
            f"OR (top.number IS NOT NULL AND s.last_message_number IS NULL))) "
            f"SELECT ARRAY(SELECT dedup_key FROM ins), (SELECT count(*) FROM sub)"
            + (f", (SELECT count(pg_notify('{NOTIFY_CHANNEL}', '')) "
               f"FROM (SELECT 1 FROM ins LIMIT 1) AS one)" if notify else "")
        )
    return _batch_sql[notify]


def _unnest(arrays: list[tuple[str, str]]) -> str:
    """``unnest(%s::type[], …)``: one array parameter per column."""
    return f"unnest({', '.join(f'%s::{db_type}[]' for _, db_type in arrays)})"


# What the receiver authenticated against; the row is stored only if the subscription still has
# these values (and an accepting status).
FACT_COLUMNS = ("id", "channel_id", "token_digest", "resource_id")


def batch_params(items: Sequence[NewNotification], now: datetime, ignored: bool,
                 cutoff: datetime) -> list:
    """The batch statement's parameters: the subscription facts and the row values as one
    array per column (``items`` without repeated dedup keys)."""
    subscriptions = {item.subscription.pk: item.subscription for item in items}
    facts = [[getattr(sub, name) for sub in subscriptions.values()] for name in FACT_COLUMNS]
    rows = [row_params(item, now, ignored) for item in items]
    return [*facts, *(list(column) for column in zip(*rows, strict=True)), cutoff, now, cutoff]


# How the storing statement fills each column of a new notification row. PARAMETER columns get
# row_params() values, in this order; FIXED ones a constant (their model default); LEFT_NULL
# ones are not named, so they are NULL. _row_columns() checks this against the model.
PARAMETER_COLUMNS = ("subscription_id", "provider", "kind", "received_at", "resource_state",
                     "message_number", "dedup_key", "headers", "payload", "processing_status",
                     "processed_at", "error")
FIXED_COLUMNS = {"attempts": (0, "0"), "claimed_by": ("", "''")}  # attname: (default, SQL)
LEFT_NULL_COLUMNS = frozenset({"next_attempt_at", "claimed_at", "processing_time_ms",
                               "lifecycle_handled_at"})
SWITCHED_OFF_ERROR = "webhooks switched off: acknowledged, not processed"


def _row_columns() -> list[tuple[str, str]]:
    """(column, ``%s`` or SQL constant) for the INSERT, in model order.

    Raises if the model gained, lost or changed a field this module does not know about, so
    the storing statement can never silently drop a value the ORM would have written.
    """
    by_attname = {f.attname: f for f in WebhookNotification._meta.concrete_fields
                  if not f.primary_key}
    known = set(PARAMETER_COLUMNS) | set(FIXED_COLUMNS) | LEFT_NULL_COLUMNS
    drifted = [name for name in LEFT_NULL_COLUMNS
               if not by_attname[name].null or by_attname[name].get_default() is not None]
    drifted += [name for name, (default, _) in FIXED_COLUMNS.items()
                if by_attname[name].get_default() != default]
    if known != set(by_attname) or drifted:
        raise RuntimeError("WebhookNotification fields changed: update store_statement.py")
    columns = [(f.column, FIXED_COLUMNS[f.attname][1] if f.attname in FIXED_COLUMNS else "%s")
               for f in by_attname.values() if f.attname not in LEFT_NULL_COLUMNS]
    # The %s placeholders must take row_params() in order.
    order = [f.attname for f in by_attname.values() if f.attname in PARAMETER_COLUMNS]
    if order != list(PARAMETER_COLUMNS):
        raise RuntimeError("PARAMETER_COLUMNS must follow the model's field order")
    return columns


def row_params(item: NewNotification, now: datetime, ignored: bool) -> list:
    """The PARAMETER_COLUMNS values as the ORM would send them on PostgreSQL.

    ``now`` is timezone.now() (aware, UTC), which DateTimeField passes through unchanged; the
    JSON fields go through the backend's own adapter (psycopg2 Json with json.dumps, as
    JSONField does); None stays None (SQL NULL); strings are already strings.
    """
    sub = item.subscription
    adapt_json = connection.ops.adapt_json_value
    number = item.message_number
    return [
        sub.pk, sub.provider, item.kind, now, item.resource_state,
        None if number is None else int(number), item.dedup_key,
        None if item.headers is None else adapt_json(item.headers, _JSON_ENCODER),
        None if item.payload is None else adapt_json(item.payload, _JSON_ENCODER),
        _IGNORED if ignored else _PENDING,
        now if ignored else None,
        SWITCHED_OFF_ERROR if ignored else "",
    ]


# headers and payload share it (both plain JSONField()).
_JSON_ENCODER = WebhookNotification._meta.get_field("headers").encoder
_IGNORED = WebhookNotification.Status.IGNORED.value  # plain str: nothing for the driver to unwrap
_PENDING = WebhookNotification.Status.PENDING.value
