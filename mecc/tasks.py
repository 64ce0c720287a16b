"""Celery tasks: thin, idempotent, taking ids; each calls one service function."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init

from mecc.admin import backtest
from mecc.delivery import webhooks
from mecc.evaluation import service as evaluation
from mecc.intake import display
from mecc.platform import task_names
from mecc.platform.db import TRANSIENT
from mecc.platform.runtime import current


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    # A forked child must not share the parent's database sockets (only worker children fire
    # this signal, and they run the app built in mecc.worker).
    from mecc import worker

    worker.flask_app.extensions["mecc"].db.dispose()


@shared_task(name=task_names.EVALUATE_EVENTS, bind=True, acks_late=True,
             reject_on_worker_lost=True, autoretry_for=TRANSIENT, retry_backoff=2,
             retry_backoff_max=60, retry_jitter=True, max_retries=5)
def evaluate_events(self: Any, event_ids: list[str]) -> dict[str, int]:
    """Evaluate these events (a redelivery or a duplicate send changes nothing)."""
    return evaluation.evaluate_events(current(), event_ids,
                                      abort_on=(SoftTimeLimitExceeded,)).counts


@shared_task(name=task_names.RELAY_EVENTS, acks_late=True, ignore_result=True)
def relay_events() -> dict[str, int]:
    """Re-send events the broker lost or a dead worker left behind (runs on beat)."""
    return evaluation.relay(current())


@shared_task(name=task_names.DELIVER_WEBHOOKS, bind=True, acks_late=True,
             reject_on_worker_lost=True, ignore_result=True)
def deliver_webhooks(self: Any, delivery_ids: list[str] | None = None) -> dict[str, int]:
    """Send these webhook deliveries, or every due one (beat). Not retried by Celery: a
    delivery stays due in the database until it is sent, and the next sweep takes it."""
    # The limits this run is held to travel in the message (set by whoever sent it, e.g.
    # beat), which may differ from this worker's own configuration: plan within those.
    sent_hard, sent_soft = (tuple(self.request.timelimit or ()) + (None, None))[:2]
    hard = float(sent_hard or self.app.conf.task_time_limit or 60)
    soft = float(sent_soft or self.app.conf.task_soft_time_limit or hard)
    summary = webhooks.deliver_due(
        current(), delivery_ids, budget=max(0.0, soft - webhooks.TIMEOUTS.total - 2),
        lease=timedelta(seconds=hard + 30))
    return summary.counts


@shared_task(name=task_names.RUN_BACKTEST, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, soft_time_limit=backtest.SOFT_TIME_LIMIT,
             time_limit=backtest.TIME_LIMIT)
def run_backtest(backtest_id: str) -> str:
    """Back-test one rule version over stored events (re-running a finished one changes
    nothing). The scan keeps within backtest.BUDGET_SECONDS; the limits are a backstop."""
    return backtest.run_backtest(current(), backtest_id)


@shared_task(name=task_names.ERASE_DISPLAY_LABELS, acks_late=True, ignore_result=True)
def erase_display_labels() -> int:
    """Erase person display labels past MECC_DISPLAY_RETENTION_HOURS (runs on beat; erasing
    twice changes nothing)."""
    return display.erase_expired(current())
