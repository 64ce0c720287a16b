"""Announcing push messages: Redis pub/sub fans them out to every API process.

Each message is first written to the push_messages table (numbered) in the transaction that
created the prompt or recorded the outcome; the announcement is only the fast path. A screen
that missed one catches up from the database with Last-Event-ID.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import redis

from mecc.models import PushMessage
from mecc.runtime import Runtime

log = logging.getLogger(__name__)
CHANNEL = "mecc:push"


def redis_client(runtime: Runtime) -> redis.Redis:
    client = runtime.extras.get("redis")
    if client is None:
        client = redis.Redis.from_url(runtime.settings.redis_url, socket_connect_timeout=2,
                                      socket_timeout=5, health_check_interval=30)
        runtime.extras["redis"] = client
    return client


def message_dict(message: PushMessage, prompt: dict[str, Any]) -> dict[str, Any]:
    """The wire shape on the channel: SSE id, event name, routing fields, and the prompt."""
    return {"id": message.id, "event": message.kind, "organisation": message.organisation,
            "team": message.team, "staff_id": message.staff_id, "data": prompt}


def announce(runtime: Runtime, messages: Sequence[dict[str, Any]]) -> None:
    """Best effort: the database holds every message, so a missed announcement is replayed."""
    if not messages:
        return
    try:
        pipe = redis_client(runtime).pipeline(transaction=False)
        for message in messages:
            pipe.publish(CHANNEL, json.dumps(message))
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("push announcement failed", extra={"error": type(exc).__name__})
