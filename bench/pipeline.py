"""Pipeline benchmark: events per second from accepted to prompts stored, against a no-op task.

Baseline (the ceiling of the queue): a separate Celery app (bench/noop_tasks.py) configured like
mecc's, one no-op task per event through the same Redis broker, `--concurrency 2`; the time from
the first send until every task has run (each INCRs a Redis counter).

Real: the API under gunicorn (mecc.platform.gunicorn_conf) and a real worker, `celery -A
mecc.worker worker --concurrency 2`, on a fresh PostgreSQL database seeded with the default rule
pack and services. The client POSTs the same number of events to /api/v1/events/batch, 100 per
batch (intake sends one evaluation task per 100 ids), and the clock stops when every event is
`evaluated` in the database, its prompts and suppressed matches stored and new prompts published
for push. Batching is what lets the real pipeline keep up with a no-op task per event: each task
carries 100 events, so the per-task cost of the broker and the worker is shared.

    .venv/bin/python -m bench.pipeline              # about 2 minutes
    .venv/bin/python -m bench.pipeline --events 2000 --no-write   # smoke test
    .venv/bin/python -m bench.pipeline --broker rabbitmq   # both runs on RabbitMQ (quorum
                                                           # queues, confirms): its own section
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    Analyzer,
    People,
    bench_env,
    broker_label,
    command_line,
    event_body,
    flush_bench_redis,
    fresh_database,
    gunicorn_description,
    machine,
    machine_markdown,
    median,
    rabbitmq_broker,
    temp_var_dir,
    write_section,
)
from tests.support import stack
from tests.support.processes import free_port, start_api, start_worker, wait_healthy

BATCH = 100
POLL_SECONDS = 0.1


# ---------------------------------------------------------------------------------------------
# Baseline: one no-op task per event


def run_noop(env: dict[str, str], var: Path, events: int, timeout: float, *,
             drain: bool = False) -> dict[str, Any]:
    """End to end: from the first send until all have run, the worker already up.
    Drain: all sent with no worker running, then a worker started; from the first task done
    until the last (the worker's own rate, without the sender)."""
    import redis

    from bench import noop_tasks

    client = redis.Redis.from_url(env["MECC_REDIS_URL"])
    client.delete(noop_tasks.DONE_KEY)
    app = noop_tasks.celery

    def done_count() -> int:
        return int(client.get(noop_tasks.DONE_KEY) or 0)

    def send_all() -> None:
        for i in range(events):
            noop_tasks.send(app, f"noop-{i}")

    worker = None
    try:
        if drain:
            began = time.perf_counter()
            send_all()
            send_seconds = time.perf_counter() - began
            worker = start_noop_worker(env, var)
            worker.wait_ready(lambda: done_count() >= 1, 60, 0.01)
            started = time.perf_counter()
        else:
            worker = start_noop_worker(env, var)
            # Warm-up: the worker is ready once one task has gone through.
            noop_tasks.send(app, "warm-up")
            worker.wait_ready(lambda: done_count() >= 1, 60, 0.01)
            client.delete(noop_tasks.DONE_KEY)
            started = time.perf_counter()
            send_all()
            send_seconds = time.perf_counter() - started
        worker.wait_ready(lambda: done_count() >= events, timeout, 0.01)
        done = time.perf_counter()
        count = done_count()
    finally:
        if worker is not None:
            worker.stop()
        client.close()
    counted = events - 1 if drain else events  # drain is timed from the first one done
    return {"events": events, "seconds": done - started, "send_seconds": send_seconds,
            "rate": counted / (done - started), "done": count}


def start_noop_worker(env: dict[str, str], var: Path) -> Any:
    return start_worker(env, var, name="noop-worker", app="bench.noop_tasks", concurrency=2,
                        loglevel="WARNING")


# ---------------------------------------------------------------------------------------------
# Real: batches through the API, evaluated by the real worker


def batch_bodies(prefix: str, events: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    people = People(rng, max(100, events // 4), prefix=f"p{seed}")
    bodies = []
    for start in range(0, events, BATCH):
        items = [event_body(rng, people, f"{prefix}-{i}")
                 for i in range(start, min(events, start + BATCH))]
        bodies.append(json.dumps({"events": items}, separators=(",", ":")).encode())
    return bodies


def post_all(port: int, key: str, bodies: list[bytes], clients: int) -> list[int]:
    """POST every body (each thread on one keep-alive connection); the accepted count of each."""
    accepted: list[int] = [0] * len(bodies)
    errors: list[str] = []
    lock = threading.Lock()
    pending = list(range(len(bodies)))

    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        try:
            while True:
                with lock:
                    if not pending or errors:
                        return
                    index = pending.pop(0)
                conn.request("POST", "/api/v1/events/batch", body=bodies[index], headers=headers)
                response = conn.getresponse()
                payload = response.read()
                if response.status != 200:
                    with lock:
                        errors.append(f"HTTP {response.status}: {payload[:300]!r}")
                    return
                results = json.loads(payload)["results"]
                accepted[index] = sum(1 for r in results if r["status"] == "accepted")
        finally:
            conn.close()

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    if errors:
        raise RuntimeError(errors[0])
    return accepted


class Counts:
    def __init__(self, database_url: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(database_url, pool_size=1)

    def statuses(self, prefix: str) -> dict[str, int]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM events WHERE event_id LIKE :p "
                                     "GROUP BY status"), {"p": prefix + "-%"})
            return {str(status): int(count) for status, count in rows}

    def stored(self, prefix: str) -> dict[str, int]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            prompts = conn.execute(text(
                "SELECT count(*) FROM prompts p JOIN events e ON e.id = p.event_id "
                "WHERE e.event_id LIKE :p"), {"p": prefix + "-%"}).scalar_one()
            suppressed = conn.execute(text(
                "SELECT count(*) FROM suppressed_matches s JOIN events e ON e.id = s.event_id "
                "WHERE e.event_id LIKE :p"), {"p": prefix + "-%"}).scalar_one()
        return {"prompts": int(prompts), "suppressed": int(suppressed)}

    def close(self) -> None:
        self.engine.dispose()


def run_real(env: dict[str, str], var: Path, database_url: str, key: str, events: int,
             clients: int, timeout: float, concurrency: int, *, drain: bool = False,
             seed: int = 2) -> dict[str, Any]:
    """End to end: from the first POST until every event is evaluated, the worker already up.
    Drain: every event accepted with no worker running, then the worker started; from the first
    event evaluated until the last (the worker's own rate, without intake)."""
    nonce = uuid.uuid4().hex[:8]
    warm_prefix, prefix = f"warm{nonce}", f"run{nonce}"
    warm_bodies = batch_bodies(warm_prefix, BATCH, seed=-seed)
    bodies = batch_bodies(prefix, events, seed=seed)
    port = free_port()
    api = start_api(env, var, port=port, workers=2, wait=False)
    worker = None
    counts = Counts(database_url)

    def evaluated() -> int:
        by_status = counts.statuses(prefix)
        return by_status.get("evaluated", 0) + by_status.get("failed", 0)

    def start_mecc_worker() -> Any:
        # WARNING: a log line per task would be part of what is timed.
        return start_worker(env, var, concurrency=concurrency, loglevel="WARNING")

    try:
        wait_healthy(api)
        if drain:
            began = time.perf_counter()
            accepted = post_all(port, key, bodies, clients)
            submit_seconds = time.perf_counter() - began
            worker = start_mecc_worker()
            worker.wait_ready(lambda: evaluated() >= 1, 90, 0.02)
            started = time.perf_counter()
        else:
            worker = start_mecc_worker()
            # Warm-up: API, worker, rule and service caches; ready once 100 are evaluated.
            post_all(port, key, warm_bodies, 1)
            worker.wait_ready(
                lambda: counts.statuses(warm_prefix).get("evaluated", 0) >= BATCH, 90,
                POLL_SECONDS)
            started = time.perf_counter()
            accepted = post_all(port, key, bodies, clients)
            submit_seconds = time.perf_counter() - started
        worker.wait_ready(lambda: evaluated() >= events, timeout, 0.05)
        done = time.perf_counter()
        by_status = counts.statuses(prefix)
        stored = counts.stored(prefix)
    finally:
        if worker is not None:
            worker.stop()
        api.stop()
        counts.close()
    counted = events - 1 if drain else events
    return {"events": events, "accepted": sum(accepted), "seconds": done - started,
            "submit_seconds": submit_seconds, "rate": counted / (done - started),
            "statuses": by_status, **stored}


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="events per measurement")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating no-op / real end-to-end rounds (median shown)")
    parser.add_argument("--no-drain", action="store_true",
                        help="skip the drain measurement (worker started on a full queue)")
    parser.add_argument("--clients", type=int, default=2, help="client threads posting batches")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--timeout", type=float, default=120.0, help="per measurement")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis",
                        help="the broker of both the no-op and the real run")
    args = parser.parse_args()

    info = machine()
    load_before = os.getloadavg()
    var = temp_var_dir("pipeline")
    database_url = fresh_database("postgresql", var)
    env = bench_env(database_url, var)
    os.environ["MECC_REDIS_URL"] = env["MECC_REDIS_URL"]  # for noop_tasks in this process
    rabbit = rabbitmq_broker(env, args.broker)
    stack.seed(env)
    key = stack.create_key(env, scopes=("events:write", "prompts:read")).key
    runs: dict[str, list[dict[str, Any]]] = {"noop": [], "real": [], "noop_drain": [],
                                             "real_drain": []}

    def noop(drain: bool) -> None:
        flush_bench_redis()
        result = run_noop(env, var, args.events, args.timeout, drain=drain)
        runs["noop_drain" if drain else "noop"].append(result)
        print(f"no-op{' drain' if drain else ''}: {result['rate']:8.1f} events/s "
              f"({result['seconds']:.1f} s; sending took {result['send_seconds']:.1f} s)",
              flush=True)

    def real(drain: bool) -> None:
        flush_bench_redis()
        done = sum(len(v) for k, v in runs.items() if k.startswith("real"))
        result = run_real(env, var, database_url, key, args.events, args.clients, args.timeout,
                          args.concurrency, drain=drain, seed=1000 + done)
        runs["real_drain" if drain else "real"].append(result)
        print(f"real{' drain' if drain else ''}: {result['rate']:8.1f} events/s "
              f"({result['seconds']:.1f} s; all accepted after {result['submit_seconds']:.1f} "
              f"s; {result['statuses']}; {result['prompts']} prompts, "
              f"{result['suppressed']} suppressed)", flush=True)

    analyzer = Analyzer(database_url).start()
    try:
        for _ in range(args.rounds):
            noop(drain=False)
            real(drain=False)
        if not args.no_drain:
            noop(drain=True)
            real(drain=True)
    finally:
        analyzer.stop()
        flush_bench_redis()
        if rabbit:
            from tests.support.rabbitmq import delete_vhost

            delete_vhost(rabbit)
    text = report(runs, info, load_before, args)
    print(text)
    if not args.no_write:
        write_section("pipeline" if args.broker == "redis" else "pipeline-rabbitmq", text)
    if not args.keep:
        shutil.rmtree(var, ignore_errors=True)


def report(runs: dict[str, list[dict[str, Any]]], info: dict[str, str],
           load_before: tuple[float, float, float], args: argparse.Namespace) -> str:
    def rate(name: str) -> float:
        return median([r["rate"] for r in runs[name]])

    def seconds(name: str) -> float:
        return median([r["seconds"] for r in runs[name]])

    noop, real = rate("noop"), rate("real")
    real_all = runs["real"] + runs["real_drain"]
    not_done = sum(r["events"] - r["statuses"].get("evaluated", 0) for r in real_all)
    last = runs["real"][-1]
    lines = [
        "## Pipeline: accepted to prompts stored, against a no-op Celery task"
        + (" (RabbitMQ)" if args.broker == "rabbitmq" else ""),
        "",
        machine_markdown(info).rstrip(),
        f"- Load average before the run: {load_before[0]:.2f} (the machine is shared; no-op "
        "and real runs alternate so that other load hits both)",
        f"- Command: `{command_line()}`",
        f"- N = {args.events:,} events per measurement. Broker: {broker_label(args.broker)}. "
        "Database: "
        "fresh PostgreSQL `mecc_bench` seeded with the default rule pack (17 rules) and "
        "services; ANALYZE every 5 s (this PostgreSQL runs with autovacuum off). Events as in "
        "bench/common.py (4-6 facts, 0-3 conditions, from a pool of people so that some have "
        "earlier prompts). Per-key rate limit raised out of reach.",
        "- No-op: `celery -A bench.noop_tasks worker --concurrency 2` (mecc's Celery settings:"
        " acks_late, prefetch 1), one task per event, sent from the benchmark process; each "
        "task INCRs a Redis counter and the clock stops when it reaches N.",
        f"- Real: gunicorn API (`mecc.platform.gunicorn_conf`: {gunicorn_description()}, 2 "
        f"workers) and `celery -A mecc.worker worker --concurrency {args.concurrency}`; "
        f"{args.clients} client threads (http.client, keep-alive) POST /api/v1/events/batch "
        f"with {BATCH} events each (intake sends one "
        "evaluation task per 100 ids); the clock stops when every event is `evaluated` in the "
        "database (prompts and suppressed matches stored, push messages written and "
        "published). API, worker, PostgreSQL, Redis and client share the 2 cores.",
        f"- End to end: from the first send / first POST, worker already running ({args.rounds}"
        " alternating rounds, median). Drain: all N queued first with no worker running "
        "(events accepted over HTTP), then the worker started; from the first done to the "
        "last: the worker side alone.",
        "",
        "| Measurement | No-op task per event, events/s | Real pipeline, events/s | Ratio |",
        "|---|---:|---:|---:|",
        f"| End to end (first send → all done) | {noop:,.0f} ({seconds('noop'):.1f} s) | "
        f"{real:,.0f} ({seconds('real'):.1f} s) | **{real / noop:.2f}×** |",
    ]
    if runs["noop_drain"] and runs["real_drain"]:
        nd, rd = rate("noop_drain"), rate("real_drain")
        lines.append(f"| Drain (worker started on a full queue) | {nd:,.0f} "
                     f"({seconds('noop_drain'):.1f} s) | {rd:,.0f} ({seconds('real_drain'):.1f}"
                     f" s) | {rd / nd:.2f}× |")
    lines += [
        "",
        "End to end, per round: " + "; ".join(
            f"no-op {n['rate']:,.0f}/s vs real {r['rate']:,.0f}/s ({r['rate'] / n['rate']:.2f}×)"
            for n, r in zip(runs["noop"], runs["real"], strict=True)) + ". Sending the no-op "
        "tasks took " + ", ".join(f"{n['send_seconds']:.1f} s" for n in runs["noop"]) + "; "
        "accepting the real events took " + ", ".join(
            f"{r['submit_seconds']:.1f} s" for r in runs["real"]) + ".",
        "",
        f"Last end-to-end round: {last['accepted']:,} events accepted, statuses "
        f"{last['statuses']}, {last['prompts']:,} prompts and {last['suppressed']:,} suppressed "
        f"matches stored. Events not evaluated, over all runs: {not_done}.",
        "",
        "Batching is what makes ≥ 1.0× possible: the no-op pays the broker round trip, the "
        "acknowledgement and the worker's per-task overhead once per event; the real pipeline "
        "pays them once per 100 events, and claims, decides and writes 100 events per "
        "transaction.",
        "",
        "Goal:",
        f"- ≥ 1.0× the no-op rate, end to end: {real / noop:.2f}× — "
        f"{'met' if real / noop >= 1 else 'NOT met'}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
