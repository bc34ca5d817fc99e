"""`webhooks_switch on|off|status`: the runtime kill switch.

The override is stored in the database; every process (web, worker, maintenance) reads it
through a cache of WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS, so a flip takes effect within seconds
without a restart. Off: receivers acknowledge and ignore, maintenance stops the channels and
creates none, and polling covers every calendar. On: push returns for the calendars the
rollout covers at the next maintenance run.
"""

from __future__ import annotations

import getpass

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from apps.webhooks.services.flags import set_runtime_switch, switch_state


class Command(BaseCommand):
    help = "Turn push notifications on or off at run time, or show the switch."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["on", "off", "status"])

    def handle(self, *args, **options):
        action = options["action"]
        try:
            if action != "status":
                set_runtime_switch(action == "on", by=f"cli:{getpass.getuser()}")
            state = switch_state()
        except DatabaseError as exc:
            raise CommandError(f"the switch is stored in the database, which failed: {exc}")
        override = "unset" if state.override is None else ("on" if state.override else "off")
        if state.updated_at:
            override += f" by {state.updated_by or '?'} at {state.updated_at:%Y-%m-%d %H:%M:%S %Z}"
        self.stdout.write(f"webhooks {'ON' if state.effective else 'OFF'} "
                          f"(WEBHOOKS_ENABLED={state.deploy_enabled}, runtime override {override})")
        if action == "on" and not state.deploy_enabled:
            self.stderr.write("WEBHOOKS_ENABLED is false in this deployment: the runtime switch "
                              "cannot turn push on; change the setting and restart.")
        elif action != "status":
            self.stdout.write(f"every process sees this within "
                              f"{settings.WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS:g} s")
