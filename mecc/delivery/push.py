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
from urllib.parse import urlsplit

import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from mecc.platform.runtime import Runtime
from mecc.store.models import PushMessage

log = logging.getLogger(__name__)
CHANNEL = "mecc:push"
# Fixed key of the PostgreSQL advisory lock that makes push-message ids follow commit order.
PUSH_ORDER_LOCK = 0x6D656363  # "mecc"


def channel_for(redis_url: str) -> str:
    """The pub/sub channel of this Redis database.

    Pub/sub ignores the database number, so two copies of the system sharing one Redis server
    on different databases would otherwise hear each other's prompts.
    """
    path = urlsplit(redis_url).path.strip("/")
    return f"{CHANNEL}:{path or '0'}"


def hold_push_order(session: Session) -> None:
    """Before numbering push messages: take a lock held until commit (PostgreSQL).

    Sequence values are handed out before commit, so two transactions could commit ids 8 and
    7 in that order, and a screen that had just read 8 would never ask for 7. Holding one lock
    from numbering to commit makes ids follow commit order. SQLite serialises writers already.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PUSH_ORDER_LOCK})


def connect(redis_url: str) -> redis.Redis:
    """The process's client for announcing (Runtime.redis; it connects on first use)."""
    return redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5,
                                health_check_interval=30)


def message_dict(message: PushMessage, prompt: dict[str, Any]) -> dict[str, Any]:
    """The wire shape on the channel: SSE id, event name, routing fields, and the prompt."""
    return {"id": message.id, "event": message.kind, "organisation": message.organisation,
            "team": message.team, "staff_id": message.staff_id, "data": prompt}


def announce(runtime: Runtime, messages: Sequence[dict[str, Any]]) -> None:
    """Best effort: the database holds every message, so a missed announcement is replayed."""
    if not messages:
        return
    try:
        pipe = runtime.redis.pipeline(transaction=False)
        for message in messages:
            pipe.publish(channel_for(runtime.settings.redis_url), json.dumps(message))
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("push announcement failed", extra={"error": type(exc).__name__})
