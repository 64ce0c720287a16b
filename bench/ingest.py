"""Ingest benchmark: sustained POST /api/v1/events against a bare endpoint on the same stack.

Both servers are gunicorn with the API's configuration (mecc.platform.gunicorn_conf, whose worker
class is named in the results) and the same worker count. The real one runs `mecc.api:create_app()`
on a fresh PostgreSQL database (`mecc_bench`; `--sqlite` for a SQLite file) with its Celery
broker in Redis database 14 (no worker runs: sent tasks wait in the queue). The bare one
(bench/bare_app.py) reads the body and answers 202. The same client (wrk, with a Lua script that
gives every event a unique event_id), concurrency and duration are used for both, alternating
bare and real for `--rounds` rounds so that drift from other load on the machine hits both alike.

Then the batch endpoint, in events per second, with batches of 100 and 500; and an in-process
breakdown of where one event's time goes.

Every request must succeed: afterwards the events in the database are counted and compared with
what the client saw answered.

    .venv/bin/python -m bench.ingest                 # about 2.5 minutes
    .venv/bin/python -m bench.ingest --sqlite
    .venv/bin/python -m bench.ingest --duration 5 --rounds 1 --no-write   # smoke test
    .venv/bin/python -m bench.ingest --broker rabbitmq   # the API publishing to RabbitMQ
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import time
import uuid
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
from bench.wrk import TEMPLATES, run_wrk, write_script
from tests.support.processes import free_port, start_api, wait_healthy
from tests.support.stack import create_key, seed


def count_events(database_url: str, prefix: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM events WHERE event_id LIKE :p"),
                                    {"p": prefix + "-%"}).scalar_one())
    finally:
        engine.dispose()


class Phase:
    def __init__(self, name: str, server: str, path: str, per_request: int,
                 connections: int) -> None:
        self.name, self.server, self.path = name, server, path
        self.per_request, self.connections = per_request, connections
        self.results: list[dict[str, Any]] = []

    @property
    def events_per_request(self) -> int:
        return self.per_request or 1

    def rate(self) -> float:
        """Events per second: the median over rounds."""
        return median([r["rate"] for r in self.results]) * self.events_per_request


def cost_breakdown(env: dict[str, str], key: str, count: int, kind: str) -> dict[str, float]:
    """In-process CPU cost of one single-event POST, by step (µs, median of 3 runs of `count`).

    No HTTP server and no concurrency: this explains the ratio rather than measuring it.
    """
    os.environ.update(env)
    from bench.bare_app import create_app as create_bare
    from mecc.api import create_app
    from mecc.intake import service as intake
    from mecc.views import auth

    app = create_app()
    runtime = app.extensions["mecc"]
    # Keep the request log lines (their cost counts) out of the terminal.
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    bare = create_bare().test_client()
    client = app.test_client()
    rng = random.Random(99)
    people = People(rng, 300)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with app.test_request_context():
        principal = auth._principal_for(key)  # the cached lookup the views use
    assert principal is not None

    def bodies() -> list[dict[str, Any]]:
        return [event_body(rng, people, f"cost-{uuid.uuid4().hex}") for _ in range(count)]

    def per_item(run: Any, items: list[Any]) -> float:
        started = time.perf_counter()
        for item in items:
            run(item)
        return (time.perf_counter() - started) / len(items) * 1e6

    def insert(row: Any) -> None:
        with runtime.db.session() as session:
            session.add(row)
            session.commit()

    def post(client_: Any, status: int) -> Any:
        def run(raw: str) -> None:
            answer = client_.post("/api/v1/events", data=raw, headers=headers)
            assert answer.status_code == status, answer.data
        return run

    samples: dict[str, list[float]] = {}
    with app.app_context():
        for _ in range(3):
            found: dict[str, float] = {}
            items = bodies()
            found["validate (marshmallow)"] = per_item(
                lambda b: intake.validate_event(runtime, b), items)
            data = [intake.validate_event(runtime, b) for b in items]
            pairs = list(zip(items, data, strict=True))
            found["build row (hashes, JSON)"] = per_item(
                lambda bd: intake.build_row(runtime, principal, bd[0], bd[1]), pairs)
            rows = [intake.build_row(runtime, principal, b, d) for b, d in pairs]
            found[f"insert + commit (SQLAlchemy ORM, {kind})"] = per_item(insert, rows)
            found["send evaluation task (Celery send_task)"] = per_item(
                lambda r: runtime.publisher.send_evaluate([r.id]), rows)
            found["accept_event (all of the above)"] = per_item(
                lambda b: intake.accept_event(runtime, principal, b), bodies())
            raw = [json.dumps(b) for b in bodies()]
            found["whole POST, Flask test client, real app"] = per_item(post(client, 202), raw)
            found["whole POST, Flask test client, bare app"] = per_item(post(bare, 202), raw)
            for name, value in found.items():
                samples.setdefault(name, []).append(value)
    runtime.db.dispose()
    devnull.close()
    return {name: median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per phase")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of bare, single, batch 100, batch 500 (medians shown)")
    parser.add_argument("--connections", type=int, default=32,
                        help="client connections for single events (bare and real)")
    parser.add_argument("--batch-connections", type=int, default=4,
                        help="client connections for the batch endpoint")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both servers)")
    parser.add_argument("--breakdown", type=int, default=200,
                        help="events per step for the in-process cost breakdown (0: skip)")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis",
                        help="the real API's broker (rabbitmq: confirms on quorum queues)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    info = machine()
    load_before = os.getloadavg()
    var = temp_var_dir("ingest")
    kind = "sqlite" if args.sqlite else "postgresql"
    database_url = fresh_database(kind, var)
    env = bench_env(database_url, var)
    rabbit = rabbitmq_broker(env, args.broker)
    flush_bench_redis()
    seed(env)
    key = create_key(env, scopes=("events:write", "prompts:read")).key
    nonce = uuid.uuid4().hex[:8]

    real_port, bare_port = free_port(), free_port()
    phases = [
        Phase("bare", "bare", "/api/v1/events", 0, args.connections),
        Phase("single", "real", "/api/v1/events", 0, args.connections),
        Phase("batch100", "real", "/api/v1/events/batch", 100, args.batch_connections),
        Phase("batch500", "real", "/api/v1/events/batch", 500, args.batch_connections),
        Phase("bare_batch500", "bare", "/api/v1/events/batch", 500, args.batch_connections),
    ]
    by_name = {p.name: p for p in phases}
    # Event ids are <nonce><phase>-<invocation>-<thread>-<counter>: unique across every wrk run,
    # warm-ups included, and countable per phase afterwards.
    scripts = {}
    for number, phase in enumerate(phases):
        scripts[phase.name] = (var / f"{phase.name}.lua", f"{nonce}{phase.name.replace('_', '')}")
        write_script(var / f"{phase.name}.lua", key, phase.per_request, seed=number)
    invocations = iter(range(1_000_000))
    ports = {"real": real_port, "bare": bare_port}

    analyzer = Analyzer(database_url).start()
    real = start_api(env, var, port=real_port, workers=args.workers, wait=False)
    bare = start_api(env, var, port=bare_port, workers=args.workers, name="bare",
                     app="bench.bare_app:create_app()", wait=False)
    try:
        wait_healthy(real)
        wait_healthy(bare)

        def measure(phase: Phase, warm: bool) -> None:
            script, prefix = scripts[phase.name]
            url = f"http://127.0.0.1:{ports[phase.server]}{phase.path}"
            if warm and args.warmup > 0:
                run_wrk(url, script, f"{prefix}-{next(invocations)}", threads=args.threads,
                        connections=phase.connections, duration=args.warmup)
            result = run_wrk(url, script, f"{prefix}-{next(invocations)}", threads=args.threads,
                             connections=phase.connections, duration=args.duration)
            phase.results.append(result)
            print(f"{phase.name:>14}: {result['rate'] * phase.events_per_request:9.1f} events/s "
                  f"({result['rate']:8.1f} requests/s, p50 {result['p50_us'] / 1000:.1f} ms, "
                  f"p99 {result['p99_us'] / 1000:.1f} ms, errors {result['errors']})", flush=True)

        for round_no in range(args.rounds):
            for name in ("bare", "single", "batch100", "batch500"):
                measure(by_name[name], warm=round_no == 0)
        measure(by_name["bare_batch500"], warm=True)
    finally:
        real.stop()
        bare.stop()
        analyzer.stop()

    stored = {name: count_events(database_url, run) for name, (_, run) in scripts.items()
              if by_name[name].server == "real"}
    costs = cost_breakdown(env, key, args.breakdown, kind) if args.breakdown else {}
    flush_bench_redis()
    if rabbit:
        from tests.support.rabbitmq import delete_vhost

        delete_vhost(rabbit)
    text = report(phases, stored, costs, info, load_before, args, kind)
    print(text)
    if not args.no_write:
        write_section("ingest" if args.broker == "redis" else "ingest-rabbitmq", text)
    if not args.keep:
        shutil.rmtree(var, ignore_errors=True)


def report(phases: list[Phase], stored: dict[str, int], costs: dict[str, float],
           info: dict[str, str], load_before: tuple[float, float, float],
           args: argparse.Namespace, kind: str) -> str:
    by = {p.name: p for p in phases}
    bare, single = by["bare"].rate(), by["single"].rate()
    b100, b500 = by["batch100"].rate(), by["batch500"].rate()

    def answered(phase: Phase) -> int:
        # wrk counts only complete responses within the duration (warm-up runs excluded).
        return sum(r["requests"] for r in phase.results) * phase.events_per_request

    def errors(phase: Phase) -> int:
        return sum(r["errors"] for r in phase.results)

    def lat(phase: Phase, key: str) -> str:
        return f"{median([r[key] for r in phase.results]) / 1000:.1f}"

    lines = [
        "## Ingest: POST /api/v1/events against a bare endpoint"
        + (" (RabbitMQ)" if args.broker == "rabbitmq" else ""),
        "",
        machine_markdown(info).rstrip(),
        f"- Load average before the run: {load_before[0]:.2f} (the machine is shared; "
        "bare and real runs alternate so that other load hits both)",
        f"- Command: `{command_line()}`",
        f"- Stack: gunicorn with `mecc.platform.gunicorn_conf` ({gunicorn_description()}), "
        f"{args.workers} workers for both servers; database {kind} (fresh `mecc_bench`"
        f"{'' if kind == 'postgresql' else ' SQLite file'}, default rule pack seeded); Celery "
        f"broker {broker_label(args.broker)} (no worker running; each accepted event sends its "
        "task); "
        "per-key rate limit raised out of reach (its Redis check still runs)."
        + (" PostgreSQL here runs with autovacuum off, so the benchmark runs ANALYZE every 5 s "
           "as auto-analyze would." if kind == "postgresql" else ""),
        f"- Client: wrk 4.1 ({args.threads} threads) with a Lua script cycling through "
        f"{TEMPLATES} realistic bodies, each request with unique event_ids; {args.duration:g} s "
        f"per measurement after a {args.warmup:g} s warm-up; {args.rounds} rounds of bare, "
        f"single, batch 100, batch 500 in turn (medians shown); single events: "
        f"{args.connections} connections, batches: {args.batch_connections}.",
        "",
        "| Endpoint | Events/s | Requests/s | p50 ms | p99 ms | Ratio | Errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| bare (bench/bare_app.py), single | {bare:,.0f} | {bare:,.0f} | "
        f"{lat(by['bare'], 'p50_us')} | {lat(by['bare'], 'p99_us')} | 1.00 (baseline) | "
        f"{errors(by['bare'])} |",
        f"| POST /api/v1/events | {single:,.0f} | {single:,.0f} | {lat(by['single'], 'p50_us')} "
        f"| {lat(by['single'], 'p99_us')} | **{single / bare:.2f}× bare** | "
        f"{errors(by['single'])} |",
        f"| POST /api/v1/events/batch, 100 per batch | {b100:,.0f} | {b100 / 100:,.1f} | "
        f"{lat(by['batch100'], 'p50_us')} | {lat(by['batch100'], 'p99_us')} | "
        f"**{b100 / single:.1f}× single** | {errors(by['batch100'])} |",
        f"| POST /api/v1/events/batch, 500 per batch | {b500:,.0f} | {b500 / 500:,.1f} | "
        f"{lat(by['batch500'], 'p50_us')} | {lat(by['batch500'], 'p99_us')} | "
        f"**{b500 / single:.1f}× single** | {errors(by['batch500'])} |",
        f"| bare, 500-event body (for scale) | {by['bare_batch500'].rate():,.0f} | "
        f"{by['bare_batch500'].rate() / 500:,.1f} | {lat(by['bare_batch500'], 'p50_us')} | "
        f"{lat(by['bare_batch500'], 'p99_us')} | | {errors(by['bare_batch500'])} |",
        "",
        "Per round: " + "; ".join(
            f"bare {b['rate']:,.0f}/s, single {s['rate']:,.0f}/s ({s['rate'] / b['rate']:.2f}×),"
            f" batch 100 {c['rate'] * 100:,.0f}/s, batch 500 {d['rate'] * 500:,.0f}/s"
            for b, s, c, d in zip(by["bare"].results, by["single"].results,
                                  by["batch100"].results, by["batch500"].results, strict=True))
        + ".",
        "",
        "Events stored vs answered by the client (stored may exceed answered by the requests "
        "in flight when wrk stops, plus the warm-up): " + ", ".join(
            f"{name} {stored[name]:,} stored / {answered(by[name]):,} answered"
            for name in ("single", "batch100", "batch500")) + (
            ". Every answered event is stored." if all(
                stored[n] >= answered(by[n]) for n in ("single", "batch100", "batch500"))
            else ". **Fewer stored than answered: see the errors column.**"),
    ]
    if costs:
        lines += [
            "",
            f"Where a single event's time goes (in-process, one thread, no HTTP server; median "
            f"of 3 runs of {args.breakdown} events, µs per event; `cost_breakdown` in "
            "bench/ingest.py):",
            "",
            "| Step | µs per event |",
            "|---|---:|",
            *[f"| {name} | {value:,.0f} |" for name, value in costs.items()],
        ]
    lines += [
        "",
        "Goals:",
        f"- Single events ≥ 0.5× bare: {single / bare:.2f}× — "
        f"{'met' if single / bare >= 0.5 else 'NOT met'}.",
        f"- Batch ≥ 10× the single-event rate in events/s: {b100 / single:.1f}× (100 per batch),"
        f" {b500 / single:.1f}× (500 per batch) — "
        f"{'met' if max(b100, b500) / single >= 10 else 'NOT met'}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
