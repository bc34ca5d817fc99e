"""Thin views: the health and dashboard documents (staff), the dashboard page, ``/metrics``."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from apps.monitoring import metrics
from apps.monitoring.charts import dashboard_charts
from apps.monitoring.services import dashboard, operator_view, rollups
from apps.monitoring.services.health_document import get_system_health
from apps.monitoring.slo_panel import slo_context

# The page loads nothing from anywhere: inline styles and SVG only.
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")


def staff_required(view: Callable) -> Callable:
    """Anonymous users go to the admin login; signed-in non-staff users get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        if not request.user.is_staff:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def _json(document: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(document, encoder=DjangoJSONEncoder, status=status)
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@staff_required
def health(request: HttpRequest) -> JsonResponse:
    document = get_system_health()
    return _json(document)


@require_GET
@staff_required
def dashboard_data(request: HttpRequest) -> JsonResponse:
    health_doc = get_system_health()
    try:
        return _json(dashboard.dashboard_document(health_doc))
    except DatabaseError:
        return _json({"health": health_doc, "recent_activity": {}, "performance_trends": {},
                      "subscription_distribution": {}}, status=503)


@require_GET
@staff_required
def dashboard_page(request: HttpRequest) -> HttpResponse:
    health_doc = get_system_health()
    context = {"health": health_doc, "m": health_doc["metrics"], "database_down": False,
               "checked_at": parse_datetime(health_doc["timestamp"])}
    try:
        trends = dashboard.performance_trends()
        context.update(
            charts=dashboard_charts(trends),
            ops=operator_view.sections(health_doc),
            distribution=dashboard.subscription_distribution(),
            expiring=dashboard.expiring_soon(),
            slowest=rollups.slowest_calendars(),
        )
        context.update(slo_context(health_doc, trends))
    except DatabaseError:
        context["database_down"] = True
    response = render(request, "monitoring/dashboard.html", context)
    response["Content-Security-Policy"] = PAGE_CSP
    response["Cache-Control"] = "no-store"
    return response


def _bearer_ok(request: HttpRequest, token: str) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token and not _bearer_ok(request, token):
        response = HttpResponse("Bearer token required.\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.render(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
