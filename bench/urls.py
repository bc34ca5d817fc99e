"""The project's URL map plus the benchmark's baseline view (mounted only by bench.settings)."""

from django.urls import path

from bench.baseline import baseline
from calendar_sync.urls import urlpatterns as project_urlpatterns

# Under /webhooks/ (before the project's catch-all there) so it takes the receivers' fast path.
urlpatterns = [
    path("webhooks/bench-baseline/", baseline, name="bench-baseline"),
    *project_urlpatterns,
]
