"""The receivers' storing statement for PostgreSQL: one round trip per Google notification.

Check the subscription facts, INSERT the row if new (``ON CONFLICT DO NOTHING``), move the
subscription forward, and NOTIFY the worker, all in one statement that is its own transaction.
It is PREPAREd once per session (``WEBHOOK_PREPARED_STATEMENTS``), and its parameters are built
directly rather than through a model instance: both were measured as large shares of the
receiver's cost. ``ingest`` decides when to use it.
"""

from __future__ import annotations

import threading
import weakref
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import ProgrammingError, connection

from apps.webhooks.models import WebhookNotification, WebhookSubscription

if TYPE_CHECKING:
    from apps.webhooks.services.ingest import NewNotification

# The worker LISTENs on this channel; NOTIFY is sent inside the storing transaction, so it is
# delivered exactly when the rows become visible (PostgreSQL only).
NOTIFY_CHANNEL = "calendar_sync_notifications"
# Notifications for subscriptions in these states are queued; any other state is ignored.
ACCEPTING_STATUSES = frozenset({"pending", "active"})

_fast_sql: dict[tuple[bool, bool], str] = {}
# Raw DB-API connection -> names of the storing statements PREPAREd in that session. A new
# (re)connection is a new object, so it is prepared again; a closed one drops out by itself.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()
UNDEFINED_PREPARED_STATEMENT = "26000"  # SQLSTATE invalid_sql_statement_name


def execute_store(cursor, shape: tuple[bool, bool], params: list) -> None:
    """Run the storing statement of this shape; PREPAREd once per session if enabled.

    Planning the combined statement costs PostgreSQL several times what executing it does;
    a prepared statement is planned once (a generic plan after a few executions). Sessions
    are per connection, which a PgBouncer in transaction mode does not keep: hence the
    WEBHOOK_PREPARED_STATEMENTS off-switch.
    """
    if not settings.WEBHOOK_PREPARED_STATEMENTS:
        cursor.execute(_fast_store_sql(*shape), params)
        return
    name = f"webhooks_store_{shape[0]:d}{shape[1]:d}"
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
    cursor.execute(f"PREPARE {name} AS {_positional(_fast_store_sql(*shape))}")
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
        accepting = ", ".join(f"'{status}'" for status in sorted(ACCEPTING_STATUSES))
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
