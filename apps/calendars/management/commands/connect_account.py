"""Connect a calendar account from a refresh token an operator already holds."""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.calendars.providers.errors import AuthRevoked, ProviderError
from apps.calendars.services.accounts import AccountConflict, connect_account


class Command(BaseCommand):
    help = ("Connect a Google or Microsoft account from an OAuth refresh token and list its "
            "calendars. Pass --refresh-token - to read the token from stdin (keeps it out of ps).")

    def add_arguments(self, parser):
        parser.add_argument("--provider", required=True, choices=["google", "microsoft"])
        parser.add_argument("--email", required=True)
        parser.add_argument("--refresh-token", required=True, dest="refresh_token")
        parser.add_argument("--user", help="owner's username (default: a user named after "
                                           "the email, created if missing)")

    def handle(self, *args, **options):
        token = options["refresh_token"]
        if token == "-":
            token = sys.stdin.readline().strip()
        # A refused token must leave nothing behind, not even the user created for it.
        with transaction.atomic():
            user, account = self._connect(options, token)
        names = ", ".join(account.calendars.filter(sync_enabled=True)
                          .order_by("name").values_list("name", flat=True))
        self.stdout.write(f"Connected {account} (account {account.pk}, user {user.username}, "
                          f"{account.status}): {names or 'no calendars'}")

    def _connect(self, options: dict, token: str) -> tuple:
        users = get_user_model().objects
        if options["user"]:
            user = users.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user named {options['user']!r}")
        else:
            user, _ = users.get_or_create(username=options["email"],
                                          defaults={"email": options["email"]})
        try:
            account = connect_account(user, options["provider"], options["email"], token)
        except AuthRevoked:
            raise CommandError("the provider refused this refresh token (invalid_grant)")
        except (ProviderError, AccountConflict) as exc:
            raise CommandError(f"could not connect the account: {exc}")
        return user, account
