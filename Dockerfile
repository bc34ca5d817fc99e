# Calendar Sync: one image for the web, worker and scheduler processes (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=settings.production \
    LOG_DIR=/app/logs \
    VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles \
    GUNICORN_BIND=0.0.0.0:8000
# GUNICORN_BIND: nginx reaches the app container over the compose network (the port is never
# published); outside a container gunicorn binds 127.0.0.1 (gunicorn.conf.py).
# PROMETHEUS_MULTIPROC_DIR is set by gunicorn.conf.py (/app/var/prometheus) for the web processes
# only: the worker and scheduler containers cannot share it (each has its own filesystem and
# numbers its processes from 1), so there it would only pile up files nobody reads. See
# README "Metrics in containers".

WORKDIR /app

# The processes run as this unprivileged user; the code itself stays owned by root, so a
# compromised process cannot rewrite it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

# Requirements first: this layer is rebuilt only when requirements.txt changes, not on every
# code change (psycopg2-binary and cryptography ship wheels: no compiler needed).
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files in the image, so every app container serves them (WhiteNoise) with or without
# nginx; the build-time secrets exist only for this command.
RUN mkdir -p /app/logs /app/var /app/staticfiles \
    && SECRET_KEY=collectstatic-only FIELD_ENCRYPTION_KEY=collectstatic-only \
       ALLOWED_HOSTS=localhost METRICS_TOKEN=collectstatic-only \
       python manage.py collectstatic --noinput -v 0 \
    && chown app:app /app/logs /app/var /app/staticfiles

USER app
EXPOSE 8000

# /webhooks/health/ answers 200 for pass/warn and 503 when the database is unreachable. It is
# exempt from the HTTPS redirect, so plain HTTP inside the container works. (No curl in the
# slim image: Python's urllib does it.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/webhooks/health/', timeout=4).status == 200 else 1)"]

# Workers, threads and timeouts come from GUNICORN_* variables (gunicorn.conf.py). SIGHUP
# reloads the code with no dropped request; SIGTERM finishes requests in flight first.
CMD ["gunicorn", "calendar_sync.wsgi:application", "-c", "gunicorn.conf.py"]
