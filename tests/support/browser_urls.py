"""The project's URLs plus a test-only sign-in, so a headless browser gets a staff session."""

from django.contrib.auth import get_user_model, login
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import path

from calendar_sync.urls import urlpatterns as project_urlpatterns


def sign_in(request: HttpRequest) -> HttpResponseRedirect:
    user = get_user_model().objects.get(username=request.GET["user"])
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponseRedirect(request.GET["next"])


urlpatterns = [path("__test__/sign-in/", sign_in), *project_urlpatterns]
