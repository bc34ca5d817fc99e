"""Thin views: the receivers live in ``receivers/``; this module holds the health endpoint."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from apps.webhooks.health import overall_status, run_checks


@require_GET
def health(request: HttpRequest) -> HttpResponse:
    results = run_checks()
    status = overall_status(results)
    body = {
        "status": status,
        "checks": {
            r.name: [{"status": "pass" if r.ok else "fail", "observedValue": r.duration_ms,
                      "observedUnit": "ms", **({"output": r.output} if r.output else {})}]
            for r in results
        },
    }
    response = HttpResponse(
        json.dumps(body), status=503 if status == "fail" else 200,
        content_type="application/health+json",
    )
    response["Cache-Control"] = "no-store"
    return response
