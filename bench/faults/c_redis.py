"""(c) Redis crashed and restarted empty (c1), and the broker's database wiped (c2)."""

from __future__ import annotations

import time

from bench.faults.load import Load
from bench.faults.plan import Plan
from bench.faults.stack import Stack
from tests.support import rabbitmq


def broker_backlog(stack: Stack, at_least: int, timeout: float) -> int:
    """Tasks waiting in the broker (queued, or delivered and not yet acknowledged), waiting up
    to `timeout` seconds for at least `at_least` so that the fault has something to lose."""
    if stack.broker == "rabbitmq":
        return _rabbitmq_backlog(stack, at_least, timeout)
    import redis

    client = redis.Redis.from_url(stack.redis.url(0), socket_connect_timeout=2)
    deadline = time.monotonic() + timeout
    try:
        while True:
            backlog = int(client.llen("celery")) + int(client.hlen("unacked"))
            if backlog >= at_least or time.monotonic() > deadline:
                return backlog
            time.sleep(0.05)
    finally:
        client.close()


def _rabbitmq_backlog(stack: Stack, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        backlog = rabbitmq.backlog(stack.broker_url)
        if backlog >= at_least or time.monotonic() > deadline:
            return backlog
        time.sleep(0.2)


def restart_redis(stack: Stack, plan: Plan, load: Load) -> list[str]:
    load.wait_fraction(0.3)
    backlog = broker_backlog(stack, max(10, plan.events // 20), plan.load_seconds / 2)
    if stack.broker == "rabbitmq":
        began = time.monotonic()
        rabbitmq.restart_app(plan.redis_down_seconds)
        return [f"RabbitMQ stopped with {backlog} tasks in it, down "
                f"{time.monotonic() - began:.0f} s (stop_app to started), quorum queues kept"]
    stack.redis.restart(down_seconds=plan.redis_down_seconds)
    return [f"Redis crashed with {backlog} tasks in it, down {plan.redis_down_seconds:.0f} s, "
            "restarted empty"]


def wipe_redis(stack: Stack, plan: Plan, load: Load) -> list[str]:
    backlogs = []
    for i in range(plan.flushes):
        load.wait_fraction((i + 1) / (plan.flushes + 1))
        backlogs.append(broker_backlog(stack, max(10, plan.events // 20), plan.load_seconds / 2))
        if stack.broker == "rabbitmq":
            rabbitmq.purge(stack.broker_url)
        else:
            stack.redis.flushdb(0)
    if stack.broker == "rabbitmq":
        return [f"purge_queue {len(backlogs)}x, with {' and '.join(map(str, backlogs))} "
                "tasks in it"]
    return [f"FLUSHDB {len(backlogs)}x, with {' and '.join(map(str, backlogs))} tasks in it"]
