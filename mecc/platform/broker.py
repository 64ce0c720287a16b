"""Hand work to the broker without ever hanging a request on it: the one send path.

The database is the record: an event (or a webhook delivery, or a back-test) is committed
before anything is sent, so a failed send only delays it until the relay or the beat sweep
sends it again. After a failure the publisher stops trying for a few seconds (a small circuit
breaker) so that a dead broker costs requests nothing. Every send to the broker goes through
`Publisher.send`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from celery import Celery

from mecc.platform import task_names

log = logging.getLogger(__name__)

BREAKER_SECONDS = 5.0


class Publisher:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """True while recent failures make us skip sending (the relay catches up)."""
        return time.monotonic() < self._open_until

    def send(self, task: str, args: list[Any], *, unsent: str, count: int = 1) -> bool:
        """Send one task; False when the broker could not take it (or the breaker is open).

        `unsent` says, for the log, what becomes of the `count` items instead.
        """
        if self.is_open:
            return False
        try:
            self.celery.send_task(task, args=args)
        except Exception as exc:  # noqa: BLE001 - any broker failure means "send later"
            with self._lock:
                self._open_until = time.monotonic() + BREAKER_SECONDS
            log.warning("broker publish failed; %s", unsent,
                        extra={"task": task, "error": type(exc).__name__, "count": count})
            return False
        return True

    def send_evaluate(self, event_ids: Sequence[str]) -> bool:
        """Ask a worker to evaluate these events (the relay re-sends them otherwise)."""
        if not event_ids:
            return True
        return self.send(task_names.EVALUATE_EVENTS, [list(event_ids)],
                         unsent="events left for the relay", count=len(event_ids))

    def send_deliver(self, delivery_ids: Sequence[str]) -> bool:
        """Ask a worker to send these webhook deliveries now (the beat sweep sends them
        anyway)."""
        if not delivery_ids:
            return False
        return self.send(task_names.DELIVER_WEBHOOKS, [list(delivery_ids)],
                         unsent="webhook deliveries left for the sweep",
                         count=len(delivery_ids))

    def send_backtest(self, backtest_id: str) -> bool:
        """Ask a worker to run this back-test (the caller marks it failed otherwise)."""
        return self.send(task_names.RUN_BACKTEST, [backtest_id], unsent="back-test not queued")
