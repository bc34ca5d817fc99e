"""Re-encrypt every stored OAuth token with the first FIELD_ENCRYPTION_KEY."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.calendars.services.encryption import rotate_tokens


class Command(BaseCommand):
    help = ("Re-encrypt every stored OAuth token with the first key of FIELD_ENCRYPTION_KEY, "
            "so that the other keys can then be removed. Accounts whose tokens no key "
            "decrypts are marked reauth_required.")

    def handle(self, *args, **options):
        summary = rotate_tokens()
        self.stdout.write(f"{summary.rotated} accounts re-encrypted with the first key")
        if summary.unreadable:
            self.stdout.write(f"{summary.unreadable} accounts had tokens no key decrypts: "
                              "marked reauth_required (their users must reconnect)")
