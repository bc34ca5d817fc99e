"""Google Calendar push notifications: ``POST /webhooks/google/``.

Everything is in the ``X-Goog-*`` headers; the body is empty and never read. One notification
per request, so a refusal is the HTTP answer (400 malformed, 403 wrong token or resource id,
404 unknown channel). ``sync`` confirms the channel; ``exists``/``not_exists`` are queued,
deduplicated on (channel, message number).
"""

from __future__ import annotations

import hmac
import re

from django.http import HttpRequest

from apps.webhooks.models import WebhookSubscription
from apps.webhooks.receivers.base import (
    STORABLE_HEADER,
    Forbidden,
    Incoming,
    MalformedRequest,
    ReceiverError,
    WebhookReceiver,
)

# Google channel ids are at most 64 characters; resource ids are opaque tokens.
CHANNEL_ID = re.compile(r"[\x21-\x7e]{1,64}")
RESOURCE_ID = re.compile(r"[\x21-\x7e]{1,255}")
MESSAGE_NUMBER = re.compile(r"[0-9]{1,18}")
STATES = frozenset({"sync", "exists", "not_exists"})
# Kept with the notification for the worker and for operators. Never the channel token.
KEPT_HEADERS = (
    "X-Goog-Channel-ID",
    "X-Goog-Message-Number",
    "X-Goog-Resource-ID",
    "X-Goog-Resource-State",
    "X-Goog-Resource-URI",
    "X-Goog-Channel-Expiration",
    "User-Agent",
)


# The same headers by their WSGI names: read from request.META directly, because
# request.headers would first rebuild a case-insensitive copy of every header on each request.
KEPT_META = tuple((name, "HTTP_" + name.upper().replace("-", "_")) for name in KEPT_HEADERS)
CHANNEL_ID_META = "HTTP_X_GOOG_CHANNEL_ID"
RESOURCE_ID_META = "HTTP_X_GOOG_RESOURCE_ID"
RESOURCE_STATE_META = "HTTP_X_GOOG_RESOURCE_STATE"
MESSAGE_NUMBER_META = "HTTP_X_GOOG_MESSAGE_NUMBER"
CHANNEL_TOKEN_META = "HTTP_X_GOOG_CHANNEL_TOKEN"


def dedup_key(channel_id: str, message_number: int) -> str:
    return f"google:{channel_id}:{message_number}"


class GoogleReceiver(WebhookReceiver):
    provider = "google"
    ack_status = 200
    reads_body = False  # Google sends no body; only its size is checked

    def parse(self, request: HttpRequest, body: bytes) -> list[Incoming | ReceiverError]:
        meta = request.META
        channel_id = _required(meta, CHANNEL_ID_META, "X-Goog-Channel-ID", CHANNEL_ID)
        resource_id = _required(meta, RESOURCE_ID_META, "X-Goog-Resource-ID", RESOURCE_ID)
        state = _required(meta, RESOURCE_STATE_META, "X-Goog-Resource-State", None)
        if state not in STATES:
            raise MalformedRequest("unknown X-Goog-Resource-State")
        number = int(_required(meta, MESSAGE_NUMBER_META, "X-Goog-Message-Number",
                               MESSAGE_NUMBER))
        kept = {}
        for name, key in KEPT_META:
            value = meta.get(key)
            if value is not None and STORABLE_HEADER.fullmatch(value):
                kept[name] = value
        return [Incoming(
            channel_id=channel_id,
            secret=meta.get(CHANNEL_TOKEN_META),
            resource_state=state,
            dedup_key=dedup_key(channel_id, number),
            message_number=number,
            headers=kept,
            resource_id=resource_id,
            resource_uri=kept.get("X-Goog-Resource-URI", ""),
            confirm_only=state == "sync",
        )]

    def check_subscription(self, item: Incoming, subscription: WebhookSubscription) -> None:
        # The stored resource id may still be empty: `sync` can arrive before the watch call
        # has returned it. Only a different one is refused.
        stored = subscription.resource_id
        if stored and not hmac.compare_digest(stored.encode(), item.resource_id.encode()):
            raise Forbidden("resource id mismatch", item.channel_id)


def _required(meta, key: str, name: str, pattern: re.Pattern | None) -> str:
    value = (meta.get(key) or "").strip()
    if not value:
        raise MalformedRequest(f"missing {name}")
    if pattern is not None and not pattern.fullmatch(value):
        raise MalformedRequest(f"malformed {name}")
    return value
