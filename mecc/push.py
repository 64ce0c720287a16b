"""Announcing prompts for live push: Redis pub/sub fans out to every API process."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import redis

from mecc.runtime import Runtime

log = logging.getLogger(__name__)
CHANNEL = "mecc:prompts"


def redis_client(runtime: Runtime) -> redis.Redis:
    client = runtime.extras.get("redis")
    if client is None:
        client = redis.Redis.from_url(runtime.settings.redis_url, socket_connect_timeout=2,
                                      socket_timeout=5, health_check_interval=30)
        runtime.extras["redis"] = client
    return client


def announce_prompts(runtime: Runtime, prompts: Sequence[dict[str, Any]],
                     kind: str = "prompt") -> None:
    """Best effort: the database holds every prompt, so a missed announcement is replayed."""
    if not prompts:
        return
    try:
        pipe = redis_client(runtime).pipeline(transaction=False)
        for prompt in prompts:
            pipe.publish(CHANNEL, json.dumps({"type": kind, "prompt": prompt}))
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("push announcement failed", extra={"error": type(exc).__name__})
