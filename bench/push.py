"""Live push benchmark: POST -> prompt on an SSE client, and SSE clients one API process holds.

Full stack on this machine: gunicorn (one worker process, mecc.platform.gunicorn_conf), a Celery worker,
Redis (database 15) and PostgreSQL (a fresh mecc_bench_push_* database, dropped at the end), all
on 127.0.0.1.

1. Latency: contact events POSTed at steady rates (10/s and 50/s); for each, the time from the
   start of the POST to its first prompt arriving on an SSE client. p50 / p99.
2. Capacity: N clients (asyncio, one process) hold streams on the same filter, so every
   message fans out to all N; messages are stored and announced as the worker does (row, then
   Redis) at 5/s, and each delivery is timed from the announcement. Ordinary requests
   (GET /api/v1/prompts) are timed alongside. Ramped 250 / 500 / 1000 / 1500 / 2000.

Run once per gunicorn worker class to compare (gevent is the default; gthread gets one thread
per stream). Writes the "## Push" section of bench/RESULTS.md.

    .venv/bin/python bench/push.py [--worker-classes gevent,gthread] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import requests  # noqa: E402
from stream_stack import (  # noqa: E402
    Proc,
    create_key,
    flush_redis,
    new_database,
    seed,
    stack_env,
    start_api,
    start_worker,
)

RESULTS = ROOT / "bench" / "RESULTS.md"
# Not the tests' database 10: a test run flushing it, or its worker taking our tasks, would
# spoil the figures. FLUSHDB on this database only.
BENCH_REDIS_URL = "redis://127.0.0.1:6379/15"
START, END = "<!-- bench:push:start -->", "<!-- bench:push:end -->"
ORG = "BENCHP"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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
        self.redis = redis.Redis.from_url(BENCH_REDIS_URL)
        self.team = team
        self.published: dict[int, float] = {}

    def announce(self) -> None:
        from mecc.delivery import push
        from mecc.intake.read import prompt_dict
        from mecc.platform.db import utcnow
        from mecc.store.models import Event, Prompt, PushMessage, new_id

        now = utcnow()
        with self.db.session() as session:
            event = Event(source="bench-push", event_id=uuid.uuid4().hex, body_hash="x",
                          organisation=ORG, setting="general_practice", team=self.team,
                          staff_id="st-1", person_id="p-1", occurred_at=now, payload={},
                          status="evaluated")
            session.add(event)
            session.flush()
            prompt = Prompt(id=new_id(), event_id=event.id, source="bench-push", person_id="p-1",
                            organisation=ORG, setting="general_practice", team=self.team,
                            staff_id="st-1", rule_key="bench", rule_version=1, topic="smoking",
                            kind="lifestyle_conversation", priority=90, indicator="warning",
                            summary="Current smoker: offer very brief advice",
                            detail="Ask - Advise - Act. " * 20, suggestions=[], sources=[],
                            status="new", contact_at=now, created_at=now, updated_at=now)
            session.add(prompt)
            message = PushMessage(kind="prompt", prompt_id=prompt.id, organisation=ORG,
                                  team=self.team, staff_id="st-1", created_at=now)
            session.add(message)
            session.commit()
            wire = json.dumps(push.message_dict(message, prompt_dict(prompt)))
        self.published[message.id] = time.perf_counter()
        self.redis.publish(push.channel_for(BENCH_REDIS_URL), wire)

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


# ------------------------------------------------------------------------------ one run
@dataclass
class Run:
    worker_class: str
    latency: list[dict[str, Any]] = field(default_factory=list)
    levels: list[dict[str, Any]] = field(default_factory=list)
    task_ms: tuple[float, float] = (float("nan"), float("nan"))
    rss_mb: list[float] = field(default_factory=list)


def rss_mb(pid: int) -> float:
    """Resident memory of gunicorn's worker process (the master's child)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        status = Path(f"/proc/{children[0]}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    except (OSError, IndexError, AttributeError):
        return float("nan")


def run_one(worker_class: str, levels: list[int], rates: list[float], seconds: float,
            cap_rate: float, cap_seconds: float) -> Run:
    directory = Path(tempfile.mkdtemp(prefix=f"mecc-bench-push-{worker_class}-"))
    flush_redis(BENCH_REDIS_URL)
    url, drop = new_database("postgresql", directory, prefix="mecc_bench_push")
    extra = {"MECC_GUNICORN_WORKER_CLASS": worker_class, "MECC_LOG_LEVEL": "WARNING"}
    if worker_class == "gthread":
        extra["MECC_GUNICORN_THREADS"] = str(max(levels) + 100)  # one thread per stream
    env = stack_env(url, directory, BENCH_REDIS_URL, **extra)
    seed(env)
    _, key = create_key(env, ORG, "events:write", "prompts:read")
    procs: list[Proc] = []
    result = Run(worker_class)
    try:
        api, base = start_api(env, directory)
        procs.append(api)
        procs.append(start_worker(env, directory, concurrency=2))
        port = int(base.rsplit(":", 1)[1])
        for rate in rates:
            print(f"[{worker_class}] latency at {rate:g} events/s for {seconds:g} s", flush=True)
            result.latency.append(asyncio.run(latency_phase(port, key, rate, seconds)))
            print(f"[{worker_class}] {result.latency[-1]}", flush=True)
        # What one evaluation task costs the worker: the ceiling on events/s it can take.
        spent = [float(x) * 1000 for x in re.findall(r"succeeded in ([0-9.]+)s",
                                                     procs[1].log_text())]
        result.task_ms = (pct(spent, 50), pct(spent, 90))
        for clients in levels:
            print(f"[{worker_class}] {clients} clients", flush=True)
            level = asyncio.run(capacity_level(port, key, url, clients, cap_rate, cap_seconds))
            level["rss_mb"] = rss_mb(api.popen.pid)
            print(f"[{worker_class}] {level}", flush=True)
            result.levels.append(level)
            if level["connected"] < clients or level["delivered"] < level["expected"] * 0.99:
                break  # this class has reached its limit
    finally:
        for proc in procs:
            proc.stop()
        drop()
    return result


# ------------------------------------------------------------------------------ report
def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
               "unknown")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"`nproc` = {os.cpu_count()}, {mem:.0f} GiB memory, CPU {cpu}, "
            f"Python {platform.python_version()}, gunicorn 1 worker process, "
            "Celery worker --concurrency 2, PostgreSQL and Redis on 127.0.0.1")


def fmt(value: float) -> str:
    return "—" if value != value else f"{value:.0f}"  # NaN check


def report(runs: list[Run], args: argparse.Namespace) -> str:
    lines = ["## Push", "",
             f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
             f"- Machine: {machine()}",
             f"- Command: `.venv/bin/python bench/push.py {' '.join(sys.argv[1:])}`".replace(
                 "push.py `", "push.py`"),
             "", "### POST → prompt on an SSE client", "",
             f"Events POSTed at {args.rates} per second, {args.seconds:g} s each (each a new "
             "person who "
             "smokes, so each prompts); time from the start of the POST to the event's first "
             "prompt on the stream. Goal: p50 ≤ 50 ms, p99 ≤ 250 ms.", "",
             "| worker class | events | achieved rate/s | delivered | p50 ms | p99 ms | max ms | "
             "worker task p50 / p90 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        for lat in run.latency:
            lines.append(f"| {run.worker_class} | {lat['events']} | {lat['rate']:.1f} | "
                         f"{lat['delivered']} | {fmt(lat['p50'])} | {fmt(lat['p99'])} | "
                         f"{fmt(lat['max'])} | {fmt(run.task_ms[0])} / {fmt(run.task_ms[1])} |")
    lines += ["", "Most of this time is the Celery worker's, not the API's: each event is one "
              "evaluation task (claim, evaluate, store, announce), and two worker processes take "
              "about 2 / task-time events per second. Task time (last column) moves with "
              "whatever else runs on these two cores; when it nears 2 / rate a queue builds and "
              "shows in p99. The push hop itself (Redis to the client) is the p50 column of the "
              "next table."]
    lines += ["", "### Concurrent SSE clients on one API process", "",
              f"All clients on one filter, so each message fans out to every one; "
              f"{args.cap_rate:g} messages/s for {args.cap_seconds:g} s, each timed from its "
              "announcement on Redis to its arrival at each client (the clients run in one "
              "asyncio process on the same 2 cores, so the figures include their own lag). "
              "Ordinary requests: GET /api/v1/prompts during the run. Goal: ≥ 1,000 clients "
              "with delivery p99 < 1 s.", "",
              "| worker class | clients | connected | deliveries | p50 ms | p99 ms | max ms | "
              "GET p50 ms | GET p99 ms | worker RSS MB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        for lv in run.levels:
            lines.append(
                f"| {run.worker_class} | {lv['clients']} | {lv['connected']} | "
                f"{lv['delivered']}/{lv['expected']} | {fmt(lv['p50'])} | {fmt(lv['p99'])} | "
                f"{fmt(lv['max'])} | {fmt(lv['ordinary_p50'])} | {fmt(lv['ordinary_p99'])} | "
                f"{fmt(lv['rss_mb'])} |")
    lines += ["", "gthread was given one thread per stream (`MECC_GUNICORN_THREADS` = largest "
              "level + 100); at its default of 16 threads it holds 16 streams. Decision: gevent "
              "(mecc/gunicorn_conf.py). psycopg 3 under gevent's patching was checked "
              "separately: five concurrent `pg_sleep(1)` in greenlets take 1.07 s, not 5 s."]
    return "\n".join(lines) + "\n"


def write_section(markdown: str) -> None:
    """Replace the push section of bench/RESULTS.md, or append it; other sections are kept."""
    block = f"{START}\n{markdown.rstrip()}\n{END}"
    text = RESULTS.read_text() if RESULTS.exists() else ""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    RESULTS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker-classes", default="gevent,gthread")
    parser.add_argument("--levels", default="250,500,1000,1500,2000")
    parser.add_argument("--rates", default="10,50", help="events/s, latency phase")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cap-rate", type=float, default=5.0, help="messages/s, capacity")
    parser.add_argument("--cap-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.seconds, args.cap_seconds = "100,250", 5.0, 4.0
    limit = raise_fd_limit()
    levels = [int(x) for x in args.levels.split(",")]
    if limit < max(levels) * 2 + 200:
        print(f"warning: open-files limit {limit} is low for {max(levels)} clients")
    rates = [float(x) for x in args.rates.split(",")]
    runs = [run_one(wc, levels, rates, args.seconds, args.cap_rate, args.cap_seconds)
            for wc in args.worker_classes.split(",")]
    markdown = report(runs, args)
    print(markdown)
    if not args.no_write:
        write_section(markdown)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(exc.stderr or exc.stdout, file=sys.stderr)
        raise
