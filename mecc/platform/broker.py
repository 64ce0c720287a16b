"""Hand work to the broker without ever hanging a request on it.

The database is the record: an event is committed as `queued` before anything is sent, so a
failed send only delays it until the relay re-sends it. After a failure the publisher stops
trying for a few seconds (a small circuit breaker) so that a dead broker costs requests nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from celery import Celery

log = logging.getLogger(__name__)

EVALUATE_TASK = "mecc.evaluate_events"
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

    def send_evaluate(self, event_ids: Sequence[str]) -> bool:
        """Ask a worker to evaluate these events; False when the broker could not take it."""
        if not event_ids:
            return True
        if self.is_open:
            return False
        try:
            self.celery.send_task(EVALUATE_TASK, args=[list(event_ids)])
        except Exception as exc:  # noqa: BLE001 - any broker failure means "relay later"
            with self._lock:
                self._open_until = time.monotonic() + BREAKER_SECONDS
            log.warning("broker publish failed; events left for the relay",
                        extra={"error": type(exc).__name__, "count": len(event_ids)})
            return False
        return True
