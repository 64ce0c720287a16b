"""Live push benchmark: POST -> prompt on an SSE client, and SSE clients one API process holds.

Full stack on this machine: gunicorn (one worker process, mecc.platform.gunicorn_conf), a Celery
worker, Redis (database 15) and PostgreSQL (a fresh mecc_bench_push_* database, dropped at the
end), all on 127.0.0.1.

1. Latency: contact events POSTed at steady rates (10/s and 50/s); for each, the time from the
   start of the POST to its first prompt arriving on an SSE client. p50 / p99.
2. Capacity: N clients (asyncio, one process) hold streams on the same filter, so every
   message fans out to all N; messages are stored and announced as the worker does (row, then
   Redis) at 5/s, and each delivery is timed from the announcement. Ordinary requests
   (GET /api/v1/prompts) are timed alongside. Ramped 250 / 500 / 1000 / 1500 / 2000.

Run once per gunicorn worker class to compare (gevent is the default; gthread gets one thread
per stream). Writes the "## Push" section of bench/RESULTS.md.

    .venv/bin/python -m bench.push [--worker-classes gevent,gthread] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import command_line, write_section
from bench.push_load import ORG, capacity_level, latency_phase, pct
from tests.support.processes import Proc, start_api, start_worker
from tests.support.stack import (
    PUSH_BENCH_REDIS_URL,
    create_key,
    flush_redis,
    new_database,
    seed,
    service_env,
)


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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
    # Not the tests' database: a test run flushing it, or its worker taking our tasks, would
    # spoil the figures.
    flush_redis(PUSH_BENCH_REDIS_URL)
    database = new_database("postgresql", directory, prefix="mecc_bench_push")
    url = database.url
    extra = {"MECC_GUNICORN_WORKER_CLASS": worker_class, "MECC_LOG_LEVEL": "WARNING"}
    if worker_class == "gthread":
        extra["MECC_GUNICORN_THREADS"] = str(max(levels) + 100)  # one thread per stream
    env = service_env(url, PUSH_BENCH_REDIS_URL, directory, **extra)
    seed(env)
    key = create_key(env, ORG, ("events:write", "prompts:read")).key
    procs: list[Proc] = []
    result = Run(worker_class)
    try:
        api = start_api(env, directory)
        procs.append(api)
        procs.append(start_worker(env, directory, concurrency=2))
        port = api.port or 0
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
        database.drop()
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
             f"- Command: `{command_line()}`",
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
        write_section("push", markdown)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(exc.stderr or exc.stdout, file=sys.stderr)
        raise
