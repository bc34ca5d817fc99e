"""gunicorn settings, from the environment (the Dockerfile and `make run` both use this)."""

import multiprocessing
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.development")

from calendar_sync.startup import check_settings_or_exit  # noqa: E402
from settings.env import ImproperEnvironment, envint  # noqa: E402

try:
    workers = envint("GUNICORN_WORKERS", min(4, multiprocessing.cpu_count() * 2), minimum=1)
    threads = envint("GUNICORN_THREADS", 4, minimum=1)
    timeout = envint("GUNICORN_TIMEOUT", 30, minimum=0)
    graceful_timeout = envint("GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=0)
    keepalive = envint("GUNICORN_KEEPALIVE", 5, minimum=0)
    max_requests = envint("GUNICORN_MAX_REQUESTS", 10000, minimum=0)
    max_requests_jitter = envint("GUNICORN_MAX_REQUESTS_JITTER", 1000, minimum=0)
except ImproperEnvironment as exc:
    sys.stderr.write(f"gunicorn: configuration error: {exc}\n")
    sys.exit(1)
# A bad Django setting stops the master here, in one line, instead of every worker failing
# to boot with a traceback.
check_settings_or_exit("gunicorn")

# Loopback unless told otherwise: gunicorn must sit behind nginx, which cuts off slow and
# stalled clients (gunicorn alone keeps a slowloris connection open for ever). The container
# image sets GUNICORN_BIND=0.0.0.0:8000 for nginx on the compose network.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gthread"
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
# %(L)s is the request time in seconds: ack latency is visible in the access log. The path is
# logged without its query string (%(U)s, not %(r)s): the OAuth callback's `code` and `state`
# never reach a log.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%(a)s"'
# Bounded header parsing (gunicorn's defaults, stated): request line, header count and size.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Worker heartbeat files on tmpfs: on a container's overlay filesystem a slow write can make
# the master take a busy worker for hung and kill it (gunicorn's advice for Docker).
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
# gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), which
# every gunicorn of that user on the machine would share. Deploys use signals (HUP reloads,
# TERM stops); the socket is only opened when a path is given.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket

# Prometheus multiprocess mode: each worker writes its metrics to files in this directory and
# /metrics merges them. Set before the workers fork (and import prometheus_client).
prometheus_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(os.environ.get("VAR_DIR", "var"), "prometheus")
)
os.makedirs(prometheus_dir, exist_ok=True)


def on_starting(server):
    # Files left by a previous run would be merged into this run's figures.
    for name in os.listdir(prometheus_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(prometheus_dir, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
