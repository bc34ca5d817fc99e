"""Create demo accounts in the running provider sandbox and connect them under `demo`."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.calendars.providers.errors import ProviderError
from apps.calendars.services.accounts import AccountConflict
from calendar_sync.dev.seed_demo import DEMO_USERNAME, SandboxUnavailable, seed_demo_accounts


class Command(BaseCommand):
    help = ("Create 2 Google and 1 Microsoft demo accounts in the sandbox at SANDBOX_URL and "
            "connect them under the 'demo' user. Safe to run again.")

    def add_arguments(self, parser):
        parser.add_argument("--sandbox-url", default="",
                            help="sandbox root URL (default: settings.SANDBOX_URL)")

    def handle(self, *args, **options):
        url = (options["sandbox_url"] or settings.SANDBOX_URL).rstrip("/")
        try:
            accounts = seed_demo_accounts(url)
        except SandboxUnavailable as exc:
            raise CommandError(str(exc))
        except (ProviderError, AccountConflict) as exc:
            raise CommandError(f"could not connect a demo account: {exc}")
        self.stdout.write(f"Demo accounts connected under user '{DEMO_USERNAME}' "
                          f"(sandbox {url}):")
        for account in accounts:
            names = ", ".join(account.calendars.filter(sync_enabled=True)
                              .order_by("name").values_list("name", flat=True))
            self.stdout.write(f"  {account.provider:<9} {account.email:<28} "
                              f"account {account.pk:<4} calendars: {names}")
