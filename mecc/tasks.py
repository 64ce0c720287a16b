"""Celery tasks: thin, idempotent, taking ids. The work lives in mecc.evaluation.pipeline."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mecc.admin import backtest
from mecc.delivery import push, webhooks
from mecc.evaluation import pipeline
from mecc.intake.read import prompt_dict
from mecc.platform.observability import EVALUATION_LATENCY, PROMPTS_CREATED
from mecc.platform.runtime import current

log = logging.getLogger(__name__)
# Only errors a retry can cure: the database or a connection was briefly unavailable.
TRANSIENT = (OperationalError, InterfaceError, PoolTimeout, ConnectionError, TimeoutError)


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    # A forked child must not share the parent's database sockets (only worker children fire
    # this signal, and they run the app built in mecc.worker).
    from mecc import worker

    worker.flask_app.extensions["mecc"].db.dispose()


@shared_task(name="mecc.evaluate_events", bind=True, acks_late=True,
             reject_on_worker_lost=True, autoretry_for=TRANSIENT, retry_backoff=2,
             retry_backoff_max=60, retry_jitter=True, max_retries=5)
def evaluate_events(self: Any, event_ids: list[str]) -> dict[str, int]:
    """Evaluate these events (a redelivery or a duplicate send changes nothing)."""
    runtime = current()
    caches = runtime.extras.setdefault("caches", {})
    if "rules" not in caches:
        from mecc.admin.rule_store import LiveRuleCache
        from mecc.admin.services import ServiceCache

        caches["rules"] = LiveRuleCache(runtime.catalogue)
        caches["services"] = ServiceCache()
    with runtime.db.session() as session:
        token, rows = pipeline.claim(session, event_ids)
        session.commit()
        if not rows:
            return {"evaluated": 0, "skipped": len(event_ids)}
        try:
            result = pipeline.evaluate_claimed(
                session, token, rows, ruleset=caches["rules"].get(session),
                services=caches["services"].get(session), catalogue=runtime.catalogue,
                max_prompts=runtime.settings.max_prompts_per_contact,
                abort_on=(SoftTimeLimitExceeded,))
            session.commit()
        except TRANSIENT:
            session.rollback()
            _release_quietly(runtime, token)
            raise
        received = {r.id: r.received_at for r in rows}
        evaluated = set(result.evaluated)
        deliveries = webhooks.pending_for_events(
            session, [r.id for r in rows if r.callback_url and r.id in evaluated])
        prompts_by_id = {p.id: p for p in result.prompts}
        messages = [push.message_dict(m, prompt_dict(prompts_by_id[m.prompt_id]))
                    for m in result.pushed]
    now = time.time()
    for event_id in result.evaluated:
        EVALUATION_LATENCY.observe(max(0.0, now - received[event_id].timestamp()))
    for prompt in result.prompts:
        PROMPTS_CREATED.labels(prompt.topic, prompt.status).inc()
    push.announce(runtime, messages)
    webhooks.send_deliver(runtime, deliveries)  # after the commit that queued them
    return {"evaluated": len(result.evaluated), "failed": len(result.failed),
            "skipped": len(event_ids) - len(result.evaluated) - len(result.failed)}


def _release_quietly(runtime: Any, token: str) -> None:
    """Best effort: if the database is still down, the lease expiry releases them instead."""
    try:
        with runtime.db.session() as session:
            pipeline.release(session, token)
            session.commit()
    except TRANSIENT:
        log.warning("could not release claimed events; they wait for their lease")


@shared_task(name="mecc.relay_events", acks_late=True, ignore_result=True)
def relay_events() -> dict[str, int]:
    """Re-send events the broker lost or a dead worker left behind (runs on beat)."""
    runtime = current()
    with runtime.db.session() as session:
        to_send, gave_up = pipeline.due_for_relay(session)
        session.commit()
    sent = 0
    for start in range(0, len(to_send), 100):
        chunk = to_send[start:start + 100]
        if runtime.publisher.send_evaluate(chunk):
            sent += len(chunk)
    if to_send or gave_up:
        log.info("relay", extra={"due": len(to_send), "sent": sent, "failed": len(gave_up)})
    return {"due": len(to_send), "sent": sent, "failed": len(gave_up)}


@shared_task(name="mecc.deliver_webhooks", bind=True, acks_late=True,
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


@shared_task(name="mecc.run_backtest", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, soft_time_limit=backtest.SOFT_TIME_LIMIT,
             time_limit=backtest.TIME_LIMIT)
def run_backtest(backtest_id: str) -> str:
    """Back-test one rule version over stored events (re-running a finished one changes
    nothing). The scan keeps within backtest.BUDGET_SECONDS; the limits are a backstop."""
    return backtest.run_backtest(current(), backtest_id)
