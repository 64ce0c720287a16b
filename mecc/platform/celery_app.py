"""Celery configured for at-least-once delivery with the database as the record.

Why each option (QUALITY.md, Reliability):
- acks_late + reject_on_worker_lost: a task is acknowledged only after it ran, and a worker
  killed mid-task gives the message back instead of losing it.
- prefetch multiplier 1: a worker holds one unacknowledged message per process, so a crash
  strands as little as possible.
- hard time limit (60 s) well below the Redis visibility timeout (300 s) and the evaluation
  lease (90 s): neither Redis nor the relay hands out work that is still legitimately running.
- publish retries bounded: a request never hangs on a broker that is down; the relay re-sends.
- back-tests have a queue of their own (Settings.backtest_queue): a worker started with
  `-Q celery` never takes one, so forty queued back-tests cannot delay a contact's prompts.
  A worker started without -Q consumes both (one process for a small installation).
- the broker is chosen by the URL's scheme: redis:// (the default) or amqp:// (RabbitMQ:
  quorum queues with a delivery limit and a dead-letter queue, publisher confirms,
  heartbeats; mecc/platform/queues.py). Live push (pub/sub) stays on Redis either way.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

from mecc.platform import task_names
from mecc.platform.queues import is_amqp, work_queue
from mecc.platform.settings import BROKER_VISIBILITY_TIMEOUT, Settings


def display_sweep_seconds(settings: Settings) -> float:
    """Seconds between erasure sweeps of person.display: a quarter of the retention window,
    1 s to 5 min, so a label outlives its window by at most that."""
    return min(300.0, max(1.0, settings.display_retention_hours * 3600 / 4))


# Evaluation, webhooks, the relay: everything but back-tests.
DEFAULT_QUEUE = "celery"


def celery_config(settings: Settings) -> dict[str, Any]:
    # MECC_TASK_TIME_LIMIT (default 60 s; fault runs lower it): Settings has checked that it
    # is below the evaluation lease and the visibility timeout.
    limit = settings.task_time_limit
    amqp = is_amqp(settings.effective_broker_url)
    return {
        "broker_url": settings.effective_broker_url,
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
        **(_rabbitmq_options(settings) if amqp else _redis_options()),
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2,
        },
        "task_default_queue": DEFAULT_QUEUE,
        "task_queues": tuple(work_queue(name, amqp=amqp,
                                        delivery_limit=settings.broker_delivery_limit)
                             for name in (DEFAULT_QUEUE, settings.backtest_queue)),
        "task_routes": {task_names.RUN_BACKTEST: {"queue": settings.backtest_queue}},
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "beat_schedule": {
            "relay-events": {"task": task_names.RELAY_EVENTS, "schedule": 5.0},
            # Sends due webhook retries; a sweep message older than its interval is dropped.
            "deliver-webhooks": {"task": task_names.DELIVER_WEBHOOKS, "schedule": 5.0,
                                 "options": {"expires": 5.0}},
            # person.display is erased this often (a quarter of its retention, at most 5 min).
            "erase-display-labels": {"task": task_names.ERASE_DISPLAY_LABELS,
                                     "schedule": display_sweep_seconds(settings),
                                     "options": {"expires": display_sweep_seconds(settings)}},
        },
    }


def _redis_options() -> dict[str, Any]:
    return {"broker_transport_options": {
        "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
        "socket_connect_timeout": 2,
        # Bounds how long a request can wait on a broker that accepts but never answers
        # (once: the publisher's breaker then skips it for 5 s).
        "socket_timeout": 3,
        "socket_keepalive": True,
        "health_check_interval": 10,
    }}


def _rabbitmq_options(settings: Settings) -> dict[str, Any]:
    """RabbitMQ (CONTRACT.md, "Broker"): the same bounds as on Redis, plus confirms.

    - confirm_publish: a send returns only once the broker has the message (on a quorum
      queue: a majority of nodes wrote it), so an accepted event's task is never lost in a
      socket buffer; a refusal raises and the publisher leaves the events to the relay.
    - read/write timeouts bound a send (and its confirm) as socket_timeout does on Redis.
    - heartbeat: the worker notices a dead broker connection (a node gone, a link cut) in
      about two intervals and reconnects, instead of waiting on TCP for minutes; the
      broker in turn returns that worker's unacknowledged messages.
    - no visibility timeout: RabbitMQ redelivers when the consumer's connection goes.
    """
    return {
        "broker_heartbeat": settings.broker_heartbeat_seconds,
        "broker_connection_timeout": 2,
        "broker_transport_options": {
            "confirm_publish": True,
            "read_timeout": 3,
            "write_timeout": 3,
        },
    }


def celery_init_app(app: Flask, settings: Settings) -> Celery:
    """A Celery app whose tasks run inside this Flask app's context."""

    class FlaskTask(Task):
        abstract = True

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(celery_config(settings))
    celery.set_default()
    app.extensions["celery"] = celery
    return celery
