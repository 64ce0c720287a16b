"""The one evaluation path: claim → evaluate → store → announce → deliver; and the relay.

`evaluate_events` is used by the worker task (mecc.tasks), by a CDS Hooks call evaluated in
the request (mecc.interop.cds.hooks) and by tests, so a fix here reaches every caller. The
steps themselves (claiming, deciding, writing) live in mecc.evaluation.pipeline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mecc.delivery import push, webhooks
from mecc.evaluation import pipeline
from mecc.intake.contacts import contact_of
from mecc.intake.read import prompt_dict
from mecc.platform import task_names
from mecc.platform.db import TRANSIENT
from mecc.platform.observability import EVALUATION_LATENCY, PROMPTS_CREATED
from mecc.platform.queues import DeadLetter, drain_dead_letters, is_amqp
from mecc.platform.runtime import Runtime
from mecc.store.models import Prompt

log = logging.getLogger(__name__)

RELAY_CHUNK = 100  # event ids per re-sent task


@dataclass(frozen=True)
class Evaluation:
    """What one call did. `prompts` are the prompts stored for the events evaluated here
    (shown and deferred), detached from their session and readable."""

    requested: int
    evaluated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Not ours to evaluate: done already, or claimed by another worker or request."""
        return self.requested - len(self.evaluated) - len(self.failed)

    @property
    def counts(self) -> dict[str, int]:
        return {"evaluated": len(self.evaluated), "failed": len(self.failed),
                "skipped": self.skipped}


def evaluate_events(runtime: Runtime, event_ids: Sequence[str], *,
                    abort_on: tuple[type[BaseException], ...] = ()) -> Evaluation:
    """Evaluate these events with the live rules; a redelivery or a duplicate changes nothing.

    The prompts, suppressed matches, push messages and webhook deliveries are committed in
    one transaction; then the push messages are announced and the deliveries handed to a
    worker (both best effort: the database holds them). A transient database error gives the
    claims back and is raised (the task retries; a CDS call answers 503). An exception in
    `abort_on` (the worker's soft time limit) abandons the batch: its claims lapse with the
    lease and the relay sends the events again, counted as an attempt.
    """
    with runtime.db.session() as session:
        token, rows = pipeline.claim(session, event_ids, lease=runtime.settings.evaluation_lease)
        session.commit()
        if not rows:
            return Evaluation(requested=len(event_ids))
        try:
            result = pipeline.evaluate_claimed(
                session, token, rows, ruleset=runtime.rule_cache.get(session),
                services=runtime.service_cache.get(session), catalogue=runtime.catalogue,
                max_prompts=runtime.settings.max_prompts_per_contact, abort_on=abort_on)
            session.commit()
        except TRANSIENT:
            session.rollback()
            release(runtime, token)
            raise
        evaluated = set(result.evaluated)
        deliveries = webhooks.pending_for_events(
            session, [r.id for r in rows if r.callback_url and r.id in evaluated])
        prompts_by_id = {p.id: p for p in result.prompts}
        contacts = {r.id: contact_of(r) for r in rows}  # new prompts: no outcome yet
        messages = [push.message_dict(m, prompt_dict(prompt, contacts.get(prompt.event_id)))
                    for m in result.pushed for prompt in (prompts_by_id[m.prompt_id],)]
    now = time.time()
    received = {r.id: r.received_at for r in rows}
    for event_id in result.evaluated:
        EVALUATION_LATENCY.observe(max(0.0, now - received[event_id].timestamp()))
    for prompt in result.prompts:
        PROMPTS_CREATED.labels(prompt.topic, prompt.status).inc()
    push.announce(runtime, messages)
    runtime.publisher.send_deliver(deliveries)  # after the commit that queued them
    return Evaluation(requested=len(event_ids), evaluated=list(result.evaluated),
                      failed=list(result.failed), prompts=list(result.prompts))


def release(runtime: Runtime, token: str) -> None:
    """Give claimed events back after a transient error, so that the retry can claim them at
    once. Best effort: if the database is still down, the lease expiry releases them."""
    try:
        with runtime.db.session() as session:
            pipeline.release(session, token)
            session.commit()
    except TRANSIENT:
        log.warning("could not release claimed events; they wait for their lease")


def relay(runtime: Runtime) -> dict[str, int]:
    """Re-send events the broker lost or a dead worker left behind; fail those out of
    attempts."""
    with runtime.db.session() as session:
        to_send, gave_up = pipeline.due_for_relay(session)
        session.commit()
    sent = 0
    for start in range(0, len(to_send), RELAY_CHUNK):
        chunk = to_send[start:start + RELAY_CHUNK]
        if runtime.publisher.send_evaluate(chunk):
            sent += len(chunk)
    dead = record_dead_letters(runtime)
    if to_send or gave_up or dead:
        log.info("relay", extra={"due": len(to_send), "sent": sent, "failed": len(gave_up),
                                 "dead_lettered": dead})
    return {"due": len(to_send), "sent": sent, "failed": len(gave_up), "dead_lettered": dead}


def record_dead_letters(runtime: Runtime) -> int:
    """Fail, with the reason, the events of evaluation messages RabbitMQ dead-lettered after
    their delivery limit (mecc/platform/queues.py); the number of messages taken. Other
    tasks' dead letters are logged: their work is in the database and their sweep takes it."""
    if not is_amqp(runtime.settings.effective_broker_url):
        return 0

    def record(letters: list[DeadLetter]) -> None:
        with runtime.db.session() as session:
            for letter in letters:
                if letter.task != task_names.EVALUATE_EVENTS:
                    log.warning("dead-lettered task", extra={"task": letter.task,
                                                             "reason": letter.reason})
                    continue
                ids = [str(i) for i in (letter.args[0] if letter.args else [])]
                failed = pipeline.fail_dead_lettered(session, ids, reason=(
                    f"dead-lettered by the broker ({letter.reason}; delivery limit "
                    f"{runtime.settings.broker_delivery_limit})"))
                log.warning("dead-lettered evaluation", extra={
                    "reason": letter.reason, "events": len(ids), "failed": len(failed)})
            session.commit()

    try:
        with runtime.publisher.celery.connection_for_write() as connection:
            return drain_dead_letters(connection, record)
    except TRANSIENT:
        log.warning("could not record dead letters; the next relay tries again")
    except Exception as exc:  # noqa: BLE001 - a broker down now: the letters wait in the queue
        log.warning("could not read dead letters", extra={"error": type(exc).__name__})
    return 0
