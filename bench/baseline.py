"""The benchmark's yardstick: a view that only INSERTs one notification row and answers 200.

It does none of the receiver's work (no validation, no subscription lookup, no dedup, no kill
switch, no subscription update): the receiver's figures are compared against it. It is marked
``lightweight`` and mounted under /webhooks/ so that, like the receivers, it skips the browser
middleware: the comparison measures the receiver's own work, not the middleware it avoids.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.webhooks.models import WebhookNotification


@method_decorator(csrf_exempt, name="dispatch")
class Baseline(View):
    lightweight = True  # the receivers' middleware fast path (apps/webhooks/middleware.py)

    def post(self, request: HttpRequest) -> HttpResponse:
        channel = request.headers["X-Goog-Channel-ID"]
        number = int(request.headers["X-Goog-Message-Number"])
        WebhookNotification.objects.create(
            subscription_id=int(request.headers["X-Bench-Subscription"]),
            provider="google",
            resource_state=request.headers["X-Goog-Resource-State"],
            message_number=number,
            dedup_key=f"baseline:{channel}:{number}",
        )
        return HttpResponse(status=200)


baseline = Baseline.as_view()
