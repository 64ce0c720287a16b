"""The no-op baseline for bench/pipeline.py: the ceiling of the queue.

A Celery app separate from mecc's, configured exactly like it
(mecc.platform.celery_app.celery_config: acks_late, prefetch 1, JSON, the same broker options)
and using the same broker, with one task that does nothing but count itself in Redis, so the
benchmark can tell when all are done.

    celery -A bench.noop_tasks worker --concurrency 2
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery

from mecc.platform.celery_app import celery_config
from mecc.platform.settings import Settings

REDIS_URL = os.environ.get("MECC_REDIS_URL", "redis://127.0.0.1:6379/14")
# RabbitMQ when MECC_BROKER_URL says so (bench/pipeline.py --broker rabbitmq); the count
# stays in Redis either way.
BROKER_URL = os.environ.get("MECC_BROKER_URL") or REDIS_URL
DONE_KEY = "bench:noop:done"
TASK_NAME = "bench.noop"

celery = Celery("bench_noop")
celery.config_from_object(celery_config(Settings(redis_url=REDIS_URL, broker_url=BROKER_URL)))
_client: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    # One connection per worker process (created after the fork).
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = redis.Redis.from_url(REDIS_URL)
    return _client[pid]


@celery.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
def noop(event_id: str) -> None:
    """Do nothing with one event, then say so."""
    _redis().incr(DONE_KEY)


def send(app: Any, event_id: str) -> None:
    app.send_task(TASK_NAME, args=[event_id])
