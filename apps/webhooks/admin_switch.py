"""The kill switch in the admin: a page under the RuntimeSetting admin with on/off buttons.

It writes the same runtime override as ``webhooks_switch``; every process picks it up within
WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from apps.webhooks.services.subscriptions.flags import (
    clear_runtime_switch,
    set_runtime_switch,
    switch_state,
)


class KillSwitchAdminMixin:
    def get_urls(self):
        view = self.admin_site.admin_view(self.kill_switch_view)
        return [path("kill-switch/", view, name="webhooks_kill_switch"), *super().get_urls()]

    def kill_switch_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            choice = request.POST.get("switch")
            if choice in ("on", "off"):
                set_runtime_switch(choice == "on", by=f"admin:{request.user.get_username()}")
            elif choice == "clear":
                clear_runtime_switch()
            else:
                messages.error(request, "Unknown choice.")
                return redirect("admin:webhooks_kill_switch")
            now_on = "ON" if switch_state().effective else "OFF"
            delay = settings.WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS
            messages.success(request, f"Push notifications are now {now_on} (every process "
                                      f"within {delay:g} s).")
            return redirect("admin:webhooks_kill_switch")
        context = {
            **self.admin_site.each_context(request),
            "title": "Push notifications kill switch",
            "opts": self.model._meta,
            "state": switch_state(),
            "cache_seconds": settings.WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS,
        }
        return TemplateResponse(request, "admin/webhooks/kill_switch.html", context)
