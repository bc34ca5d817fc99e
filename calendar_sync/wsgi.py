"""WSGI entry point for gunicorn: ``calendar_sync.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.development")
application = get_wsgi_application()
