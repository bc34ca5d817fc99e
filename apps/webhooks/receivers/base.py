"""The shape every webhook receiver shares: validate → parse → authenticate → store → answer.

Provider modules only say what differs (where the notification is, what makes it valid, what
the success status is). Every refusal is a typed ``ReceiverError`` and is turned into a
response in one place, :meth:`WebhookReceiver.post`, which also maps any database failure to
503 + Retry-After (providers retry 5xx) — never a 2xx before the rows have committed.

The view calls no provider API and runs no sync: the committed row is the worker's queue.
Single-notification receivers (Google) may authenticate against a recently read copy of the
subscription (``subscription_cache``); whenever that copy and the database disagree
(``StaleSubscription``) the request is redone once from the database, so the cache changes
the cost of an answer, never the answer.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, InterfaceError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import Counter, Histogram

from apps.webhooks.models import SubscriptionQuerySet, WebhookSubscription
from apps.webhooks.services.receiving import counters, ingest, ratelimit
from apps.webhooks.services.subscriptions import flags, subscription_cache
from apps.webhooks.services.subscriptions.subscription_cache import StaleSubscription
from calendar_sync import sli
from calendar_sync.metrics import ACK_SECONDS, NOTIFICATIONS

logger = logging.getLogger("apps.webhooks.receivers")

# Providers retry a 503; a few seconds is enough for a database fail-over or restart.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5
# A forged batch could name thousands of unknown ids: remember only this many per request.
MAX_ORPHANS_PER_REQUEST = 20
# ... and at most WEBHOOK_ORPHANS_PER_SOURCE_PER_DAY per client address and day.
ORPHAN_BUDGET_WINDOW = 24 * 3600
# A request header is kept with the notification only if it is printable ASCII of sane length.
STORABLE_HEADER = re.compile(r"[\x20-\x7e]{0,2048}")


# labels() takes a lock and builds a key on every call; the label sets here are fixed (provider
# x outcome), so the hot path keeps the children it has already looked up.
@functools.cache
def _ack_seconds(provider: str) -> Histogram:
    return ACK_SECONDS.labels(provider)


@functools.cache
def _notifications(provider: str, outcome: str) -> Counter:
    return NOTIFICATIONS.labels(provider, outcome)


# --- Refusals ------------------------------------------------------------------------------
class ReceiverError(Exception):
    """A refusal. ``reason`` is our own fixed text: it never echoes input or a secret."""

    status = 400
    outcome = "invalid"  # metric outcome and WebhookCounter kind

    def __init__(self, reason: str, channel_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.channel_id = channel_id


class MalformedRequest(ReceiverError):
    status, outcome = 400, "invalid"


class PayloadTooLarge(ReceiverError):
    status, outcome = 413, "invalid"


class Forbidden(ReceiverError):
    """Wrong shared secret (channel token, clientState) or resource id."""

    status, outcome = 403, "rejected"


class UnknownChannel(ReceiverError):
    status, outcome = 404, "orphan"

    def __init__(self, reason: str, channel_id: str, resource_id: str = "",
                 resource_uri: str = "", tenant_id: str = "") -> None:
        super().__init__(reason, channel_id)
        self.resource_id = resource_id
        self.resource_uri = resource_uri
        self.tenant_id = tenant_id


# --- What a provider module hands over -----------------------------------------------------
@dataclass
class Incoming:
    """One parsed notification (a Google request, or one item of a Graph batch)."""

    channel_id: str
    secret: str | None = field(repr=False)  # channel token / clientState: compare, never keep
    kind: str = "change"
    resource_state: str = ""
    dedup_key: str = ""
    message_number: int | None = None
    headers: dict = field(default_factory=dict)
    payload: dict = field(default_factory=dict)
    resource_id: str = ""
    resource_uri: str = ""
    tenant_id: str = ""  # Graph: whose mailbox (with resource_uri), to judge an orphan
    confirm_only: bool = False  # Google `sync`: confirms the channel, queues nothing


@dataclass
class Tally:
    """What happened to the items of one request."""

    stored: int = 0
    duplicate: int = 0
    confirmed: int = 0
    ignored: int = 0  # subscription stopped/suspended/expired/failed: not stored
    switched_off: int = 0  # stored as `ignored` because of the kill switch

    @property
    def accepted(self) -> int:
        return self.stored + self.duplicate + self.confirmed + self.ignored + self.switched_off


def usable_secret(value: object) -> str | None:
    """The presented secret if it can be compared at all (a str that encodes), else None."""
    if not isinstance(value, str) or len(value) > 4096:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes
        return None
    return value


def plain_response(status: int, text: str = "") -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    # Some answers reflect caller input (Graph's validation token): never let it be sniffed.
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response


@method_decorator(csrf_exempt, name="dispatch")
class WebhookReceiver(View):
    """Base receiver. Subclasses set ``provider`` and implement :meth:`parse`."""

    provider = ""
    http_method_names = ["post"]  # anything else: 405 (Django's View)
    # Served by ReceiverFastPathMiddleware: no session/auth/messages/CSRF middleware.
    lightweight = True
    ack_status = 200
    reads_body = True
    # Google sends one notification per request and its refusals are the HTTP answer; Graph
    # batches, and a bad item is dropped while the rest of the batch is acknowledged.
    single_notification = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        started = time.perf_counter()
        ratelimit.note_forwarding_peer(request)
        try:
            response = self.early_response(request) or self.receive(request)
        except ReceiverError as exc:
            response = self.refusal_response(exc, self.refuse(request, [exc]))
        except (DatabaseError, InterfaceError) as exc:  # InterfaceError is not a DatabaseError
            response = self.unavailable(exc)
        _ack_seconds(self.provider).observe(time.perf_counter() - started)
        # Availability SLI: 2xx good, 5xx bad (counted in the cache: the database may be away).
        sli.count_request(self.provider, response.status_code)
        return response

    # Hooks --------------------------------------------------------------------------------
    def early_response(self, request: HttpRequest) -> HttpResponse | None:
        """Answer before anything else is read (Graph's validation handshake)."""
        return None

    def parse(self, request: HttpRequest, body: bytes) -> list[Incoming | ReceiverError]:
        raise NotImplementedError

    def check_subscription(self, item: Incoming, subscription: WebhookSubscription) -> None:
        """Provider-specific checks once the secret matched (raise Forbidden)."""

    # Steps --------------------------------------------------------------------------------
    def receive(self, request: HttpRequest) -> HttpResponse:
        items = self.parse(request, self.read_body(request))
        try:
            return self.receive_items(request, items, use_cache=self.single_notification)
        except StaleSubscription:
            pass  # what we knew about the subscription changed: redo it from the database
        try:
            return self.receive_items(request, items, use_cache=False)
        except StaleSubscription:
            # Changed again while we looked (being stopped or replaced right now).
            self.record_tally(Tally(ignored=1))
            return plain_response(self.ack_status)

    def receive_items(self, request: HttpRequest, items: list[Incoming | ReceiverError],
                      use_cache: bool) -> HttpResponse:
        wanted = [i.channel_id for i in items if isinstance(i, Incoming)]
        subscriptions = ingest.subscriptions_for(self.provider, wanted, use_cache=use_cache)
        to_store, to_confirm, problems = [], [], []
        tally = Tally()
        for item in items:
            try:
                if isinstance(item, ReceiverError):
                    raise item
                subscription = self.authenticate(item, subscriptions.get(item.channel_id))
            except ReceiverError as exc:
                if use_cache and isinstance(exc, Forbidden):
                    # Perhaps refused on what we remembered: only the database may refuse.
                    subscription_cache.forget(self.provider, item.channel_id)
                    raise StaleSubscription(item.channel_id)
                if self.single_notification:
                    raise
                problems.append(exc)
                continue
            if subscription.status not in SubscriptionQuerySet.ACCEPTING:
                tally.ignored += 1
            elif item.confirm_only:
                to_confirm.append(subscription)
            else:
                to_store.append(self.new_notification(item, subscription))
        self.commit(to_store, to_confirm, tally)
        self.record_tally(tally)
        if problems:
            decision = self.refuse(request, problems)
            if decision.limited and not tally.accepted:
                return self.too_many(decision)
        return plain_response(self.ack_status)

    def read_body(self, request: HttpRequest) -> bytes:
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        raw_length = request.META.get("CONTENT_LENGTH") or "0"
        if not raw_length.isdigit():
            raise MalformedRequest("invalid Content-Length")
        if int(raw_length) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        if not self.reads_body:
            return b""
        try:
            body = request.body
        except RequestDataTooBig:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        except (OSError, SuspiciousOperation):
            raise MalformedRequest("unreadable body")
        if len(body) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        return body

    def authenticate(self, item: Incoming,
                     subscription: WebhookSubscription | None) -> WebhookSubscription:
        if subscription is None:
            raise UnknownChannel("unknown channel", item.channel_id, item.resource_id,
                                 item.resource_uri, item.tenant_id)
        if not subscription.matches_token(usable_secret(item.secret)):
            raise Forbidden("shared secret mismatch", item.channel_id)
        self.check_subscription(item, subscription)
        return subscription

    def new_notification(self, item: Incoming,
                         subscription: WebhookSubscription) -> ingest.NewNotification:
        return ingest.NewNotification(
            subscription=subscription, kind=item.kind, resource_state=item.resource_state,
            dedup_key=item.dedup_key, message_number=item.message_number,
            headers=item.headers, payload=item.payload,
        )

    def commit(self, to_store: list[ingest.NewNotification],
               to_confirm: list[WebhookSubscription], tally: Tally) -> None:
        """Store durably; raises a database error (→ 503) if the rows did not commit."""
        if to_store:
            switched_off = not flags.webhooks_enabled()
            results = ingest.store(to_store, ignored=switched_off)
            new = sum(results)
            tally.duplicate += len(results) - new
            if switched_off:
                tally.switched_off += new
            else:
                tally.stored += new
        for subscription in to_confirm:
            ingest.confirm(subscription)
            tally.confirmed += 1

    def record_tally(self, tally: Tally) -> None:
        for outcome, n in (("stored", tally.stored), ("duplicate", tally.duplicate),
                           ("confirmed", tally.confirmed),
                           ("ignored", tally.ignored + tally.switched_off)):
            if n:
                _notifications(self.provider, outcome).inc(n)
        # Rows that are not in the notification table are counted there (best effort).
        counters.count_event(self.provider, "duplicate", tally.duplicate)
        counters.count_event(self.provider, "ignored", tally.ignored)
        sli.count_received(self.provider, tally.stored)

    # Refusals -----------------------------------------------------------------------------
    def refuse(self, request: HttpRequest, problems: list[ReceiverError]) -> ratelimit.Decision:
        """Count refusals against the source's limits; record them unless it is over."""
        decision = ratelimit.hit("ip", ratelimit.client_ip(request), self.provider)
        unknown = list({p.channel_id: p for p in problems if isinstance(p, UnknownChannel)}
                       .values())[:MAX_ORPHANS_PER_REQUEST]
        for problem in unknown:
            per_channel = ratelimit.hit("channel", f"{self.provider}:{problem.channel_id}",
                                        self.provider)
            if per_channel.limited and per_channel.retry_after > decision.retry_after:
                decision = per_channel
        if decision.limited:
            _notifications(self.provider, "rate_limited").inc(len(problems))
            counters.count_event(self.provider, "rate_limited", len(problems))
            return decision
        if unknown and ratelimit.within_budget(
                "orphan-source", ratelimit.client_ip(request), len(unknown),
                settings.WEBHOOK_ORPHANS_PER_SOURCE_PER_DAY, window=ORPHAN_BUDGET_WINDOW):
            for problem in unknown:
                counters.record_orphan(self.provider, problem.channel_id, problem.resource_id,
                                       problem.resource_uri, problem.tenant_id)
        by_outcome: dict[str, int] = {}
        for problem in problems:
            by_outcome[problem.outcome] = by_outcome.get(problem.outcome, 0) + 1
        for outcome, n in by_outcome.items():
            _notifications(self.provider, outcome).inc(n)
            counters.count_event(self.provider, outcome, n)
        self.log_refusals(problems)
        return decision

    def log_refusals(self, problems: list[ReceiverError]) -> None:
        """One line per request, whatever the number of refused items: counts by reason and
        the first channel named. The channel id has passed the provider module's syntax check
        by the time it is set; secrets are never part of a ReceiverError."""
        by_reason: dict[tuple[int, str], int] = {}
        for problem in problems:
            key = (problem.status, problem.reason)
            by_reason[key] = by_reason.get(key, 0) + 1
        forged = any(isinstance(p, Forbidden) for p in problems)
        reasons = ", ".join(f"{status} {reason}: {n}"
                            for (status, reason), n in sorted(by_reason.items()))
        channel = next((p.channel_id for p in problems if p.channel_id), "-")
        logger.log(logging.WARNING if forged else logging.INFO,
                   "%s notifications refused (%s) channel=%s", self.provider, reasons, channel)

    def refusal_response(self, exc: ReceiverError,
                         decision: ratelimit.Decision) -> HttpResponse:
        if decision.limited:
            return self.too_many(decision)
        return plain_response(exc.status, exc.reason)

    def too_many(self, decision: ratelimit.Decision) -> HttpResponse:
        response = plain_response(429, "too many refused requests")
        response["Retry-After"] = str(decision.retry_after)
        return response

    def unavailable(self, exc: Exception) -> HttpResponse:
        _notifications(self.provider, "unavailable").inc()
        # The class name only: driver messages can carry hostnames or credentials.
        logger.error("%s notification not stored, database unavailable: %s", self.provider,
                     type(exc).__name__)
        response = plain_response(503, "temporarily unavailable")
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
        return response


@csrf_exempt
def not_allowed(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """Everything under /webhooks/ that is not a receiver or health: 405, never a 404 page."""
    response = HttpResponseNotAllowed([])
    response["X-Content-Type-Options"] = "nosniff"
    return response
