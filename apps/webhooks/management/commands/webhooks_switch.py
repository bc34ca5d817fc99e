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

from apps.webhooks.services.subscriptions.flags import set_runtime_switch, switch_state


def _rollout_line() -> str:
    """The phase and what it puts on push; WEBHOOKS_ENABLED=false wins over any phase."""
    phase = settings.WEBHOOK_DEPLOYMENT_PHASE
    adopters = len(settings.WEBHOOK_EARLY_ADOPTERS)
    line = (f"rollout: phase {phase or 'unset'} (users {settings.WEBHOOK_USER_ROLLOUT_PERCENTAGE}"
            f" %, calendars {settings.WEBHOOK_ROLLOUT_PERCENTAGE} %, {adopters} early adopters)")
    if phase and not settings.WEBHOOKS_ENABLED:
        line += f"; WEBHOOKS_ENABLED=false overrides phase {phase}: push is off"
    elif phase == 2 and not adopters:
        line += "; warning: phase 2 with no WEBHOOK_EARLY_ADOPTERS puts no calendar on push"
    return line


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
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CommandError(f"the switch is stored in the database, which failed: "
                               f"{first_line}") from exc
        override = "unset" if state.override is None else ("on" if state.override else "off")
        if state.updated_at:
            override += f" by {state.updated_by or '?'} at {state.updated_at:%Y-%m-%d %H:%M:%S %Z}"
        self.stdout.write(f"webhooks {'ON' if state.effective else 'OFF'} "
                          f"(WEBHOOKS_ENABLED={state.deploy_enabled}, runtime override {override})")
        self.stdout.write(_rollout_line())
        if action == "on" and not state.deploy_enabled:
            self.stderr.write("WEBHOOKS_ENABLED is false in this deployment: the runtime switch "
                              "cannot turn push on; change the setting and restart.")
        elif action != "status":
            self.stdout.write(f"every process sees this within "
                              f"{settings.WEBHOOK_RUNTIME_FLAG_CACHE_SECONDS:g} s")
