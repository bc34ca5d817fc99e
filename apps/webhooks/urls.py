from django.urls import path

from apps.webhooks import views

urlpatterns = [
    path("health/", views.health, name="webhooks-health"),
]
