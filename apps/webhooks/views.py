"""Thin views: the receivers live in ``receivers/``; this module holds the health endpoint."""

from __future__ import annotations

import json

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from apps.webhooks.probes import CheckResult, overall_status, run_checks


def check_document(result: CheckResult, detailed: bool) -> dict:
    document = {"status": "pass" if result.ok else "fail"}
    if detailed:
        document.update(observedValue=result.duration_ms, observedUnit="ms")
        if result.output:
            document["output"] = result.output
    return document


@require_GET
def health(request: HttpRequest) -> HttpResponse:
    results = run_checks()
    status = overall_status(results)
    # Anyone may probe: only staff see timings and failure classes (a map for an attacker).
    try:
        detailed = request.user.is_staff
    except DatabaseError:  # a session cookie while the database is away: answer anyway
        detailed = False
    body = {"status": status, "checks": {r.name: [check_document(r, detailed)] for r in results}}
    response = HttpResponse(
        json.dumps(body), status=503 if status == "fail" else 200,
        content_type="application/health+json",
    )
    response["Cache-Control"] = "no-store"
    return response
