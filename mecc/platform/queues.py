"""The broker's queues, and the dead-letter queue RabbitMQ hands poison messages to.

On Redis the queues are plain lists (the relay's MAX_ATTEMPTS is the only limit). On RabbitMQ
(CONTRACT.md, "Broker") every work queue is a quorum queue: replicated across the cluster, so
a lost node loses no message. A message delivered `delivery_limit` times without being
acknowledged (a task that kills its worker every time, say) is dead-lettered to DEAD_LETTER,
a quorum queue nothing consumes but the relay: it turns each dead-lettered evaluation into
`failed` events with the reason (mecc.evaluation.service.relay), so nothing is dropped unseen.
Dead-lettering is at-least-once (RabbitMQ >= 3.10), which needs `reject-publish` overflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Exchange, Queue

log = logging.getLogger(__name__)

AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
DEAD_LETTER = "mecc.dead-letter"
_DEAD_LETTER_EXCHANGE = Exchange(DEAD_LETTER, type="direct", durable=True)


def is_amqp(broker_url: str) -> bool:
    """True for RabbitMQ (a failover list `amqp://a;amqp://b` counts by its first URL)."""
    return broker_url.strip().lower().startswith(AMQP_SCHEMES)


def dead_letter_queue() -> Queue:
    return Queue(DEAD_LETTER, _DEAD_LETTER_EXCHANGE, routing_key=DEAD_LETTER, durable=True,
                 queue_arguments={"x-queue-type": "quorum"})


class QuorumQueue(Queue):
    """A quorum work queue that declares its dead-letter queue first, wherever it is declared
    (worker, publisher or relay), so a message is never dead-lettered into nothing."""

    def declare(self, nowait: bool = False, channel: Any = None) -> Any:
        dead = dead_letter_queue()
        dead.maybe_bind(channel or self.channel)
        dead.declare()
        return super().declare(nowait=nowait, channel=channel)


def work_queue(name: str, *, amqp: bool, delivery_limit: int) -> Queue:
    if not amqp:
        return Queue(name)
    # A topic exchange: Celery's native delayed delivery (a task retried with a countdown on
    # quorum queues) routes back through topic bindings; a direct exchange would hold the
    # retry in the worker's memory instead.
    return QuorumQueue(name, Exchange(name, type="topic", durable=True), routing_key=name,
                       durable=True, queue_arguments={
                           "x-queue-type": "quorum",
                           "x-delivery-limit": delivery_limit,
                           "x-dead-letter-exchange": DEAD_LETTER,
                           "x-dead-letter-routing-key": DEAD_LETTER,
                           "x-dead-letter-strategy": "at-least-once",
                           "x-overflow": "reject-publish",
                       })


@dataclass(frozen=True)
class DeadLetter:
    """One task message RabbitMQ gave up on."""

    task: str
    args: Sequence[Any]
    reason: str  # e.g. "delivery_limit"


def drain_dead_letters(connection: Connection, handle: Callable[[list[DeadLetter]], None], *,
                       limit: int = 500) -> int:
    """Take up to `limit` dead-lettered messages, pass them to `handle` (which records them in
    the database), and only then acknowledge them: if `handle` raises, the messages go back
    to the dead-letter queue when the channel closes, and the next relay tries again."""
    queue = dead_letter_queue()
    with connection.channel() as channel:
        bound = queue(channel)
        bound.declare()
        messages: list[Any] = []
        while len(messages) < limit:
            message = bound.get(no_ack=False, accept=["json"])
            if message is None:
                break
            messages.append(message)
        if not messages:
            return 0
        handle([_parse(m) for m in messages])
        for message in messages:
            message.ack()
    return len(messages)


def _parse(message: Any) -> DeadLetter:
    headers = message.headers or {}
    try:
        args = (message.decode() or [[]])[0]
    except Exception:  # noqa: BLE001 - an unreadable body is still recorded, by its task
        args = []
    deaths = headers.get("x-death") or [{}]
    reason = str(headers.get("x-first-death-reason") or deaths[0].get("reason") or "unknown")
    return DeadLetter(task=str(headers.get("task") or "unknown"), args=list(args or []),
                      reason=reason)
