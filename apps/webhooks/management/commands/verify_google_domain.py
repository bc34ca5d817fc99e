"""`verify_google_domain --domain D`: can Google push notifications reach this deployment?

Checks what Google requires today (domain verification is no longer one of them): HTTPS on D
with a certificate that verifies, https://D/webhooks/health/ answering 200, and a robots.txt
that does not block APIs-Google. Prints each finding with how to fix it; exits 1 on a problem.
`--ca-file` (or REQUESTS_CA_BUNDLE) adds a trusted CA, e.g. for a staging or test server.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.webhooks.services.subscriptions.domain_check import verify_domain


class Command(BaseCommand):
    help = "Check that Google can deliver push notifications to https://DOMAIN/webhooks/google/."

    def add_arguments(self, parser):
        parser.add_argument("--domain", required=True, help="public host, e.g. sync.example.com")
        parser.add_argument("--port", type=int, default=443)
        parser.add_argument("--ca-file", help="extra trusted CA bundle (PEM); default: system CAs")
        parser.add_argument("--timeout", type=float, default=10.0)

    def handle(self, *args, **options):
        domain = options["domain"].strip().lower().removeprefix("https://").rstrip("/")
        findings = verify_domain(domain, port=options["port"], ca_file=options["ca_file"],
                                 timeout=options["timeout"])
        for finding in findings:
            self.stdout.write(f"{finding.level}: {finding.message}")
            if finding.fix:
                self.stdout.write(f"  fix: {finding.fix}")
        problems = sum(f.level == "problem" for f in findings)
        if problems:
            raise CommandError(f"{problems} problem(s): Google cannot deliver to {domain} yet")
        self.stdout.write(f"Google can deliver push notifications to https://{domain}/webhooks/")
