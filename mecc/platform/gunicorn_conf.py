"""gunicorn settings for the API (`mecc run` and docker-compose use this file)."""

from __future__ import annotations

import os

from prometheus_client import multiprocess

from mecc.platform.settings import Settings

# The same Settings the app reads (MECC_* variables): a bad value stops gunicorn here, clearly.
_settings = Settings.from_env()

# gevent: a staff screen holds its Server-Sent Events stream open all day, and a greenlet per
# connection costs kilobytes where a thread costs a stack and a share of the GIL. Measured by
# bench/push.py on this 2-core machine (bench/RESULTS.md, "Push"): one gevent process delivered
# to 1,000 streams with p99 0.1 s, 1,500 with 0.2 s and 2,000 with 0.5 s; gthread, given a thread
# per stream, had p99 0.27 s at 1,000 (ordinary GETs slowed to 0.5 s) and 5.4 s at 1,500; at
# its default 16 threads it holds 16. gevent patches sockets, select and threading before the
# app loads; redis-py and psycopg 3 (>= 3.1.14 detects the patching; checked: 5 concurrent
# pg_sleep(1) take 1.07 s) then yield while they wait. MECC_GUNICORN_WORKER_CLASS=gthread
# switches back.
worker_class = _settings.gunicorn_worker_class
worker_connections = _settings.gunicorn_worker_connections
threads = _settings.gunicorn_threads
timeout = 60
graceful_timeout = 10
keepalive = 5
accesslog = None  # the app logs each request as JSON, without query strings
errorlog = "-"


def child_exit(_server: object, worker: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
