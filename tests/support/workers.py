"""A real Celery worker (and beat) for an app under test in this process.

`celery -A mecc.worker worker` runs as a subprocess with the app's own settings (its database
and Redis): no eager mode, the app publishes to Redis and this process, forked children and
all, does the work. Give the app a Redis database of its own (stack.WORKER_REDIS_URL or the
module's), not the one tests/conftest.py's `redis_url` flushes, so that other tests' stray
messages never reach the worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.support.processes import Proc, start_beat, start_worker
from tests.support.stack import service_env

T = TypeVar("T")


def worker_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """The environment of a process reading the same settings as the app under test."""
    # A broker other than the stack's Redis (RabbitMQ: tests/support/rabbitmq.py).
    broker = {"MECC_BROKER_URL": str(settings["broker_url"])} if settings.get("broker_url") else {}
    if settings.get("broker_delivery_limit"):  # queues declared twice must agree on it
        broker["MECC_BROKER_DELIVERY_LIMIT"] = str(settings["broker_delivery_limit"])
    return service_env(str(settings["database_url"]), str(settings["redis_url"]),
                       Path(settings["var_dir"]), secret_key=str(settings["secret_key"]),
                       pseudonym_key=str(settings["pseudonym_key"]), MECC_LOG_LEVEL="INFO",
                       **broker)


@contextmanager
def running_worker(settings: Mapping[str, Any], log_dir: Path, *,
                   concurrency: int = 1) -> Iterator[Proc]:
    """A started, ready worker (prefork) for the duration of the block, then a warm shutdown."""
    worker = start_worker(worker_env(settings), log_dir, concurrency=concurrency)
    try:
        yield worker
    finally:
        worker.stop(grace=20)


@contextmanager
def running_beat(settings: Mapping[str, Any], log_dir: Path) -> Iterator[Proc]:
    """Celery beat, which sends the relay and the webhook sweep every few seconds."""
    beat = start_beat(worker_env(settings), log_dir)
    try:
        yield beat
    finally:
        beat.stop(grace=20)


def wait_for(probe: Callable[[], T | None], worker: Proc, what: str,
             timeout: float = 30.0) -> T:
    """Poll `probe` until it returns something; an AssertionError (a test failure) with the
    worker's log if it does not within `timeout`, or as soon as the worker dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        if not worker.alive():
            raise AssertionError(f"the worker died while waiting for {what}:\n{worker.tail()}")
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s. Worker log:\n{worker.tail()}")
