"""The clients of bench/push.py: SSE streams held over asyncio, the latency phase (events
POSTed, time to their first prompt on a stream) and the capacity phase (N streams on one
filter, messages announced as the worker announces them)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from tests.support.factories import add_prompt, add_push_message
from tests.support.stack import PUSH_BENCH_REDIS_URL

ORG = "BENCHP"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# ------------------------------------------------------------------------------ SSE over asyncio
@dataclass
class Client:
    writer: asyncio.StreamWriter | None = None
    received: int = 0
    failed: str | None = None


async def hold_stream(port: int, path: str, key: str, client: Client,
                      on_message: Callable[[bytes, float], None], opened: asyncio.Event) -> None:
    """One SSE connection (HTTP/1.0, so the body is plain, not chunked) until cancelled."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        client.writer = writer
        writer.write((f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                      f"Authorization: Bearer {key}\r\n\r\n").encode())
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            client.failed = status.decode(errors="replace").strip()
            return
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        opened.set()
        while True:
            block = await reader.readuntil(b"\n\n")
            if block.startswith(b"id: "):
                client.received += 1
                on_message(block, time.perf_counter())
    except asyncio.CancelledError:
        raise
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        client.failed = type(exc).__name__
    finally:
        opened.set()
        if client.writer is not None:
            client.writer.close()


def message_id(block: bytes) -> int:
    return int(block[4:block.index(b"\n")])


def message_data(block: bytes) -> dict[str, Any]:
    start = block.index(b"\ndata: ") + 7
    return dict(json.loads(block[start:block.index(b"\n", start)]))


# ------------------------------------------------------------------------------ workload
def event_body(team: str, n: int) -> dict[str, Any]:
    """An event that always prompts (a current smoker), for a new person each time."""
    return {
        "event_id": f"push-{uuid.uuid4().hex[:12]}", "source": "bench-push",
        "occurred_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
        "organisation": ORG, "setting": "general_practice", "contact_type": "appointment",
        "staff": {"id": "st-1", "role": "practice_nurse", "team": team},
        "person": {"id": f"p-{n:07d}-{uuid.uuid4().hex[:4]}", "birth_date": "1971-04-02",
                   "sex": "female", "postcode_district": "M14"},
        "facts": {"smoking_status": "current", "bmi": 31.0},
    }


async def latency_phase(port: int, key: str, rate: float, seconds: float) -> dict[str, Any]:
    team = f"lat-{uuid.uuid4().hex[:6]}"
    first_seen: dict[str, float] = {}

    def on_message(block: bytes, at: float) -> None:
        if block.startswith(b"id: ") and b"event: prompt\n" in block:
            first_seen.setdefault(str(message_data(block)["event"]), at)

    client, opened = Client(), asyncio.Event()
    task = asyncio.create_task(hold_stream(
        port, f"/api/v1/stream?organisation={ORG}&team={team}", key, client, on_message, opened))
    await asyncio.wait_for(opened.wait(), 30)
    await asyncio.sleep(1.0)
    sent: dict[str, float] = {}
    errors = 0
    session = requests.Session()
    lock = threading.Lock()

    def post(n: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            r = session.post(f"http://127.0.0.1:{port}/api/v1/events", json=event_body(team, n),
                             headers={"Authorization": f"Bearer {key}"}, timeout=10)
            ok = r.status_code == 202
        except requests.RequestException:
            ok = False
        with lock:
            if ok:
                sent[r.json()["id"]] = started
            else:
                errors += 1

    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    begin = time.perf_counter()
    posts = []
    for n in range(total):
        delay = begin + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        posts.append(loop.run_in_executor(None, post, n))
    await asyncio.gather(*posts)
    achieved = total / (time.perf_counter() - begin)
    deadline = time.perf_counter() + 30
    while len(first_seen.keys() & sent.keys()) < len(sent) and time.perf_counter() < deadline:
        await asyncio.sleep(0.2)
    task.cancel()
    latencies = [(first_seen[e] - t) * 1000 for e, t in sent.items() if e in first_seen]
    return {"events": total, "rate": achieved, "accepted": len(sent), "errors": errors,
            "delivered": len(latencies), "p50": pct(latencies, 50), "p99": pct(latencies, 99),
            "max": max(latencies, default=float("nan"))}


class Announcer:
    """Stores a prompt and its push message, then announces it, as the worker does."""

    def __init__(self, database_url: str, team: str) -> None:
        import redis

        from mecc.platform.db import Database

        self.db = Database(database_url)
        self.redis = redis.Redis.from_url(PUSH_BENCH_REDIS_URL)
        self.team = team
        self.published: dict[int, float] = {}

    def announce(self) -> None:
        from mecc.delivery import push
        from mecc.intake.read import prompt_dict

        with self.db.session() as session:
            prompt = add_prompt(session, organisation=ORG, team=self.team, source="bench-push",
                                rule_key="bench", priority=90, indicator="warning",
                                summary="Current smoker: offer very brief advice",
                                detail="Ask - Advise - Act. " * 20)
            message = add_push_message(session, prompt)
            session.commit()
            wire = json.dumps(push.message_dict(message, prompt_dict(prompt)))
        self.published[message.id] = time.perf_counter()
        self.redis.publish(push.channel_for(PUSH_BENCH_REDIS_URL), wire)

    def close(self) -> None:
        self.redis.close()
        self.db.dispose()


async def capacity_level(port: int, key: str, database_url: str, clients: int,
                         rate: float, seconds: float) -> dict[str, Any]:
    team = f"cap-{clients}-{uuid.uuid4().hex[:4]}"
    announcer = Announcer(database_url, team)
    deliveries: list[float] = []

    def on_message(block: bytes, at: float) -> None:
        sent = announcer.published.get(message_id(block))
        if sent is not None:
            deliveries.append((at - sent) * 1000)

    path = f"/api/v1/stream?organisation={ORG}&team={team}"
    holders = [Client() for _ in range(clients)]
    tasks: list[asyncio.Task[None]] = []
    connect_started = time.perf_counter()
    for start in range(0, clients, 50):  # connect in waves, as screens would over a morning
        waves = []
        for client in holders[start:start + 50]:
            opened = asyncio.Event()
            tasks.append(asyncio.create_task(hold_stream(port, path, key, client, on_message,
                                                         opened)))
            waves.append(opened.wait())
        await asyncio.wait_for(asyncio.gather(*waves), 120)
    connect_seconds = time.perf_counter() - connect_started
    await asyncio.sleep(2.0)
    connected = sum(1 for c in holders if c.failed is None)

    loop = asyncio.get_running_loop()
    ordinary: list[float] = []
    stop = threading.Event()

    def ordinary_requests() -> None:
        session = requests.Session()
        while not stop.is_set() and len(ordinary) < 200:
            started = time.perf_counter()
            r = session.get(f"http://127.0.0.1:{port}/api/v1/prompts",
                            params={"organisation": ORG, "team": team, "limit": 10},
                            headers={"Authorization": f"Bearer {key}"}, timeout=30)
            if r.status_code == 200:
                ordinary.append((time.perf_counter() - started) * 1000)
            time.sleep(0.1)

    side = loop.run_in_executor(None, ordinary_requests)
    count = int(rate * seconds)
    begin = time.perf_counter()
    for n in range(count):
        delay = begin + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await loop.run_in_executor(None, announcer.announce)
    expected = count * connected
    deadline = time.perf_counter() + 20
    while len(deliveries) < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.2)
    stop.set()
    await side
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    announcer.close()
    await asyncio.sleep(1.0)
    return {"clients": clients, "connected": connected, "connect_s": connect_seconds,
            "messages": count, "expected": expected, "delivered": len(deliveries),
            "p50": pct(deliveries, 50), "p99": pct(deliveries, 99),
            "max": max(deliveries, default=float("nan")),
            "ordinary_p50": pct(ordinary, 50), "ordinary_p99": pct(ordinary, 99),
            "failures": sorted({c.failed for c in holders if c.failed})[:3]}
