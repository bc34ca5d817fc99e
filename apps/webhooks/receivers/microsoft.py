"""Microsoft Graph change and lifecycle notifications.

``POST /webhooks/microsoft/`` and ``POST /webhooks/microsoft/lifecycle/``:

- ``?validationToken=…`` is Graph's handshake: echo the URL-decoded token as ``text/plain``
  at once — before the body, the database or the kill switch is looked at.
- Otherwise the body is ``{"value": [...]}`` (else 400). Each item stands alone: a known
  subscription with the right ``clientState`` is stored; an unknown one is remembered as an
  orphan; a wrong ``clientState`` is dropped and counted. A well-formed batch answers 202.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse

from apps.webhooks.models import WebhookNotification
from apps.webhooks.receivers.base import (
    STORABLE_HEADER,
    Incoming,
    MalformedRequest,
    PayloadTooLarge,
    ReceiverError,
    WebhookReceiver,
    plain_response,
)

SUBSCRIPTION_ID = re.compile(r"[\x21-\x7e]{1,255}")
EVENT_NAME = re.compile(r"[\x21-\x7e]{1,64}")  # changeType / lifecycleEvent
KEPT_HEADERS = ("User-Agent", "Content-Type", "Client-Request-Id")
MAX_DEPTH = 32
# Graph's handshake token is about a hundred characters; what we echo stays small.
MAX_VALIDATION_TOKEN_CHARS = 1024


class MalformedItem(ReceiverError):
    """One item of a batch is unusable: it is dropped, the rest of the batch is not."""

    status, outcome = 400, "invalid"


def change_dedup_key(item: dict) -> str:
    data = item.get("resourceData") if isinstance(item.get("resourceData"), dict) else {}
    etag = data.get("@odata.etag")
    if not isinstance(etag, str) or not etag:
        # Without an etag two different changes would look alike: rather than risk dropping
        # a real change, fold in the notification id, or make the key unique.
        etag = "id:" + item["id"] if isinstance(item.get("id"), str) else uuid.uuid4().hex
    parts = [item["subscriptionId"], item["changeType"], item["resource"], etag]
    return "microsoft:" + _digest(parts)


def lifecycle_dedup_key(item: dict) -> str:
    parts = [item["subscriptionId"], item["lifecycleEvent"],
             str(item.get("subscriptionExpirationDateTime") or "")]
    if isinstance(item.get("id"), str):
        parts.append(item["id"])
    return "microsoft:lifecycle:" + _digest(parts)


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()


class MicrosoftReceiver(WebhookReceiver):
    provider = "microsoft"
    ack_status = 202  # Graph's recommendation when processing is deferred
    single_notification = False
    accepts_changes = True

    def early_response(self, request: HttpRequest) -> HttpResponse | None:
        try:
            if "validationToken" not in request.GET:
                return None
            token = request.GET["validationToken"]  # QueryDict has URL-decoded it
        except SuspiciousOperation:  # e.g. too many query fields
            raise MalformedRequest("unreadable query string")
        if len(token) > MAX_VALIDATION_TOKEN_CHARS:
            raise MalformedRequest("validationToken too long")
        return plain_response(200, token)

    def parse(self, request: HttpRequest, body: bytes) -> list[Incoming | ReceiverError]:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise MalformedRequest("body is not JSON")
        if not isinstance(document, dict) or not isinstance(document.get("value"), list):
            raise MalformedRequest('body is not {"value": [...]}')
        # The JSON text is bounded by the body size (milliseconds of C parsing); the work per
        # item (checks, lookups, storing) is bounded here, before any item is looked at.
        limit = settings.WEBHOOK_MAX_BATCH_ITEMS
        if len(document["value"]) > limit:
            raise PayloadTooLarge(f"more than {limit} notifications in one request")
        headers = {name: value for name in KEPT_HEADERS
                   if (value := request.headers.get(name)) is not None
                   and STORABLE_HEADER.fullmatch(value)}
        return [self.parse_item(raw, headers) for raw in document["value"]]

    def parse_item(self, raw: object, headers: dict) -> Incoming | ReceiverError:
        if not isinstance(raw, dict):
            return MalformedItem("item is not an object")
        subscription_id = raw.get("subscriptionId")
        if not isinstance(subscription_id, str) or not SUBSCRIPTION_ID.fullmatch(subscription_id):
            return MalformedItem("missing or malformed subscriptionId")
        payload = {k: v for k, v in raw.items() if k != "clientState"}
        if not _storable(payload, 0):
            return MalformedItem("item cannot be stored", subscription_id)
        lifecycle = "lifecycleEvent" in raw
        if lifecycle:
            event = raw.get("lifecycleEvent")
            if not isinstance(event, str) or not EVENT_NAME.fullmatch(event):
                return MalformedItem("malformed lifecycleEvent", subscription_id)
            kind, state, key = WebhookNotification.Kind.LIFECYCLE, event, lifecycle_dedup_key(raw)
        elif not self.accepts_changes:
            return MalformedItem("not a lifecycle notification", subscription_id)
        else:
            change, resource = raw.get("changeType"), raw.get("resource")
            if not isinstance(change, str) or not EVENT_NAME.fullmatch(change):
                return MalformedItem("missing or malformed changeType", subscription_id)
            if not isinstance(resource, str) or not resource:
                return MalformedItem("missing resource", subscription_id)
            kind, state, key = WebhookNotification.Kind.CHANGE, change, change_dedup_key(raw)
        resource, tenant = raw.get("resource"), raw.get("tenantId")
        return Incoming(channel_id=subscription_id, secret=raw.get("clientState"), kind=kind,
                        resource_state=state, dedup_key=key, headers=headers, payload=payload,
                        resource_uri=resource[:2048] if isinstance(resource, str) else "",
                        tenant_id=tenant if isinstance(tenant, str) and len(tenant) <= 64
                        else "")


class MicrosoftLifecycleReceiver(MicrosoftReceiver):
    """``lifecycleNotificationUrl``: only lifecycle items (reauthorizationRequired,
    subscriptionRemoved, missed) are valid here."""

    accepts_changes = False


def _storable(value: object, depth: int) -> bool:
    """Whether the JSON value can go into a jsonb column: no NUL, no lone surrogate."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(k, depth + 1) and _storable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v, depth + 1) for v in value)
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return True
