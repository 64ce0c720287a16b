"""gunicorn settings for the API (`mecc run` and docker-compose use this file)."""

from __future__ import annotations

import os

from prometheus_client import multiprocess

# gthread: plain threads, so a slow client or a long-lived stream does not block a worker.
worker_class = os.environ.get("MECC_GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("MECC_GUNICORN_THREADS", "16"))
timeout = 60
graceful_timeout = 10
keepalive = 5
accesslog = None  # the app logs each request as JSON, without query strings
errorlog = "-"


def child_exit(_server: object, worker: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
