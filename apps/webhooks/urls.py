from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from apps.webhooks import views
from apps.webhooks.receivers.base import not_allowed
from apps.webhooks.receivers.google import GoogleReceiver
from apps.webhooks.receivers.microsoft import MicrosoftLifecycleReceiver, MicrosoftReceiver

urlpatterns = [
    # Exempt so that a POST gets the contract's 405 from require_GET, not a CSRF 403.
    path("health/", csrf_exempt(views.health), name="webhooks-health"),
    path("google/", GoogleReceiver.as_view(), name="webhooks-google"),
    path("microsoft/", MicrosoftReceiver.as_view(), name="webhooks-microsoft"),
    path("microsoft/lifecycle/", MicrosoftLifecycleReceiver.as_view(),
         name="webhooks-microsoft-lifecycle"),
    # Anything else under /webhooks/ (the monitoring URLs are mounted before this include).
    re_path(r"^.*$", not_allowed, name="webhooks-not-allowed"),
]
