"""A short path through the middleware stack for the webhook receivers.

Providers post to the receivers at high rates, and a receiver needs none of what the browser
middleware does: no session, no user, no messages, no CSRF (receivers are csrf_exempt: their
authentication is the channel token / clientState). Placed right after SecurityMiddleware (so
SSL redirect, HSTS and nosniff still apply), this middleware calls a receiver view directly and
skips the rest of the stack; every other request goes through it unchanged. What the skipped
middleware would have added to a receiver's answer is added here: ``Content-Length``
(CommonMiddleware, which also checks the Host) and ``X-Frame-Options`` (XFrameOptionsMiddleware).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, get_resolver

PREFIX = "/webhooks/"


class ReceiverFastPathMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(PREFIX):
            return self.get_response(request)
        try:
            match = get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)
        if not getattr(getattr(match.func, "view_class", None), "lightweight", False):
            return self.get_response(request)
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it (DisallowedHost: 400)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        if not response.streaming and "Content-Length" not in response:
            response["Content-Length"] = str(len(response.content))
        response.headers.setdefault("X-Frame-Options",
                                    getattr(settings, "X_FRAME_OPTIONS", "DENY"))
        return response
