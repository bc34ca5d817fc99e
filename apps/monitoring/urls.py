"""Monitoring URLs, mounted at the root before the webhooks URLs (which answer 405 to anything
else under /webhooks/)."""

from django.urls import path

from apps.monitoring import views

urlpatterns = [
    path("webhooks/monitoring/", views.dashboard_page, name="monitoring-dashboard"),
    path("webhooks/monitoring/health/", views.health, name="monitoring-health"),
    path("webhooks/monitoring/dashboard/", views.dashboard_data, name="monitoring-dashboard-data"),
    path("metrics", views.metrics_view, name="metrics"),
]
