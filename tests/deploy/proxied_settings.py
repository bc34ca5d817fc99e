"""settings.test plus production's proxy settings: the app insists on HTTPS and trusts the
X-Forwarded-Proto header that nginx sets (as settings.production does)."""

from settings.test import *  # noqa: F403

SECURE_SSL_REDIRECT = True
SECURE_REDIRECT_EXEMPT = [r"^webhooks/health/$", r"^metrics$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
