"""URL map. Each app owns its URLs; this file only mounts them."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # Monitoring first: the webhooks include answers 405 to anything else under /webhooks/.
    path("", include("apps.monitoring.urls")),
    path("webhooks/", include("apps.webhooks.urls")),
    path("accounts/", include("apps.calendars.urls")),
    path("admin/", admin.site.urls),
]
