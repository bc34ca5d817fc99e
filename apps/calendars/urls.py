"""OAuth connect flow: /accounts/<google|microsoft>/connect/ and /callback/."""

from django.urls import re_path

from apps.calendars import views

app_name = "calendars"

_PROVIDER = r"^(?P<provider>google|microsoft)"

urlpatterns = [
    re_path(_PROVIDER + r"/connect/$", views.connect, name="oauth-connect"),
    re_path(_PROVIDER + r"/callback/$", views.callback, name="oauth-callback"),
]
