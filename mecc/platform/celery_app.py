"""Celery configured for at-least-once delivery with the database as the record.

Why each option (QUALITY.md, Reliability):
- acks_late + reject_on_worker_lost: a task is acknowledged only after it ran, and a worker
  killed mid-task gives the message back instead of losing it.
- prefetch multiplier 1: a worker holds one unacknowledged message per process, so a crash
  strands as little as possible.
- hard time limit (60 s) well below the Redis visibility timeout (300 s) and the evaluation
  lease (90 s): neither Redis nor the relay hands out work that is still legitimately running.
- publish retries bounded: a request never hangs on a broker that is down; the relay re-sends.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from celery import Celery, Task
from flask import Flask

from mecc.platform.settings import SettingsError, _int

VISIBILITY_TIMEOUT = 300
TASK_TIME_LIMIT = 60


def task_time_limit(env: Mapping[str, str] | None = None) -> int:
    """The hard time limit (MECC_TASK_TIME_LIMIT, default 60 s; fault runs lower it).

    It must stay below the evaluation lease, or a slow but live task could be overtaken by a
    second claim of the same events.
    """
    from mecc.evaluation.pipeline import evaluation_lease

    env = os.environ if env is None else env
    limit = _int(env, "MECC_TASK_TIME_LIMIT", TASK_TIME_LIMIT, 1, VISIBILITY_TIMEOUT - 1)
    lease = evaluation_lease(env).total_seconds()
    if lease <= limit:
        raise SettingsError(f"MECC_EVALUATION_LEASE_SECONDS ({lease:.0f}) must be longer than "
                            f"the task time limit MECC_TASK_TIME_LIMIT ({limit})")
    return limit


def celery_config(broker_url: str) -> dict[str, Any]:
    limit = task_time_limit()
    return {
        "broker_url": broker_url,
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": limit,
        "task_soft_time_limit": limit - max(1, limit // 6),  # 60 s -> 50 s
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "socket_connect_timeout": 2,
            # Bounds how long a request can wait on a broker that accepts but never
            # answers (once: the publisher's breaker then skips it for 5 s).
            "socket_timeout": 3,
            "socket_keepalive": True,
            "health_check_interval": 10,
        },
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2,
        },
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "beat_schedule": {
            "relay-events": {"task": "mecc.relay_events", "schedule": 5.0},
            # Sends due webhook retries; a sweep message older than its interval is dropped.
            "deliver-webhooks": {"task": "mecc.deliver_webhooks", "schedule": 5.0,
                                 "options": {"expires": 5.0}},
        },
    }


def celery_init_app(app: Flask) -> Celery:
    """A Celery app whose tasks run inside this Flask app's context."""

    class FlaskTask(Task):  # type: ignore[misc]
        abstract = True

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    settings = app.extensions["mecc"].settings
    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(celery_config(settings.effective_broker_url))
    celery.set_default()
    app.extensions["celery"] = celery
    return celery
