"""The runner: start the stack, run each scenario, print the table; the entry point."""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import faults
from bench.faults import a_children, b_worker, c_redis, d_postgres, e_duplicates, f_webhooks
from bench.faults.check import Row, check, settle
from bench.faults.f_receiver import GONE_EVERY, HOOK_BASE_DELAY
from bench.faults.load import Load, event_body
from bench.faults.plan import (
    CLIENTS,
    LEASE_SECONDS,
    RABBITMQ_TITLES,
    RELAY_GRACE,
    RELAY_PERIOD,
    RESEND_AFTER,
    SCENARIOS,
    TASK_TIME_LIMIT,
    TITLES,
    Plan,
    plan_for,
)
from bench.faults.stack import Stack

Inject = Callable[[Stack, Plan, Load], list[str]]
INJECT: dict[str, Inject] = {
    "a": a_children.kill_children, "b": b_worker.kill_worker, "c1": c_redis.restart_redis,
    "c2": c_redis.wipe_redis, "d": d_postgres.stop_postgres,
}


def run_scenario(stack: Stack, scenario: str, plan: Plan, run: str) -> Row:
    if scenario == "f":
        return f_webhooks.run_webhooks(stack, plan, run)
    began = time.monotonic()
    row = Row(scenario)
    bodies = [event_body(scenario, run, i) for i in range(plan.events)]
    deadline = plan.pg_down_seconds + 60
    if scenario == "e":
        load = e_duplicates.send_twice(stack, plan, bodies, deadline, row)
    else:
        # Redis faults lose only what waits in the broker: send faster than the worker
        # evaluates, so that a backlog builds up.
        seconds = (min(plan.load_seconds / 4, plan.events / 200) if scenario in ("c1", "c2")
                   else plan.load_seconds)
        load = Load(stack, bodies, seconds, deadline).start()
        row.notes.extend(INJECT[scenario](stack, plan, load))
        load.join()
    accepted_ids = {i for s in load.sent.values() for i in s.ids}
    waited = settle(stack, f"faults-{scenario}", accepted_ids, plan.settle_seconds)
    died = stack.check_alive()
    if died:
        row.notes.append("died on their own: " + ", ".join(died))
        row.server_errors += len(died)
    check(stack, scenario, load, row)
    row.notes.append(f"settled {waited:.0f} s after the load")
    row.seconds = time.monotonic() - began
    return row


def table(rows: list[Row]) -> str:
    lines = ["| scenario | attempted | accepted | evaluated | lost | duplicated | "
             "5xx other than 503 | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {TITLES[r.scenario]} | {r.attempted} | {r.accepted} | {r.evaluated} | "
                     f"{r.lost} | {r.duplicated} | {r.server_errors} | "
                     f"{'; '.join(r.notes)} |")
    return "\n".join(lines)


def footer(plan: Plan) -> str:
    return (f"Settings for the run: evaluation lease {LEASE_SECONDS} s "
            f"(MECC_EVALUATION_LEASE_SECONDS; production 90 s), task hard time limit "
            f"{TASK_TIME_LIMIT} s (MECC_TASK_TIME_LIMIT; production 60 s), relay every "
            f"{RELAY_PERIOD} s for events queued over {RELAY_GRACE} s or past their lease; "
            f"{plan.events} events per scenario over {plan.load_seconds:.0f} s from {CLIENTS} "
            f"clients; settle bound {plan.settle_seconds:.0f} s. Bound on the delay an event "
            f"can suffer: a lost message costs at most {RELAY_GRACE} + {RELAY_PERIOD} s, a "
            f"worker dying mid-task at most the lease + {RELAY_PERIOD} s "
            f"({LEASE_SECONDS + RELAY_PERIOD} s here, {90 + RELAY_PERIOD} s in production), "
            f"and each further loss of the re-sent message {RESEND_AFTER} s more; plus the "
            "time to drain the queue ahead of it. (f) runs worker and beat with the production "
            "limits (MECC_TASK_TIME_LIMIT 60 s, lease 90 s) and MECC_WEBHOOK_BASE_DELAY_SECONDS="
            f"{HOOK_BASE_DELAY} (production 5 s): retry delays start at {HOOK_BASE_DELAY} s and "
            "double (full jitter), and the 5 s beat sweep sends what is due; "
            f"{plan.hook_events} events over {plan.hook_load_seconds:.0f} s, one in "
            f"{GONE_EVERY} to the 410 receiver.")


def machine() -> str:
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()

    mem = next((ln.split()[1] for ln in out("free", "-g").splitlines()
                if ln.startswith("Mem:")), "?")
    return f"`nproc` = {out('nproc')}, `free -g` total {mem} GB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults",
                                     description=(faults.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=0,
                        help="events per scenario (default 1000; 100 with --quick); (f) "
                             "scales its own 300 (60 with --quick) in proportion")
    parser.add_argument("--quick", action="store_true", help="100 events, fewer faults (CI)")
    parser.add_argument("--scenario", default=",".join(SCENARIOS),
                        help="comma-separated: a, b, c (= c1,c2), c1, c2, d, e, f")
    parser.add_argument("--pg-down", type=float, default=0,
                        help="seconds PostgreSQL stays down in (d) (default 20; 6 with --quick)")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis",
                        help="the broker under fault (rabbitmq: a virtual host of the "
                             "machine's RabbitMQ at 127.0.0.1:5672; pub/sub stays on Redis)")
    parser.add_argument("--output", type=Path, help="append the table as markdown to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    plan = plan_for(args)
    chosen: list[str] = []
    for name in (s.strip() for s in args.scenario.split(",") if s.strip()):
        names = ["c1", "c2"] if name == "c" else [name]
        for n in names:
            if n not in SCENARIOS:
                parser.error(f"unknown scenario {n!r}; choose from a, b, c, c1, c2, d, e, f")
            if n not in chosen:
                chosen.append(n)
    command = ".venv/bin/python -m bench.faults " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    when = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()

    # A SIGTERM (a CI timeout) still runs the `finally` that stops our servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("faults: stopped by SIGTERM"))
    workdir = Path(tempfile.mkdtemp(prefix="mecc-faults-"))
    print(f"faults: work directory {workdir}", file=sys.stderr, flush=True)
    stack = Stack(workdir, broker=args.broker)
    if args.broker == "rabbitmq":
        TITLES.update(RABBITMQ_TITLES)
    rows: list[Row] = []
    run = f"{int(time.time()):x}"
    try:
        stack.start()
        for scenario in chosen:
            print(f"faults: {TITLES[scenario]} ...", file=sys.stderr, flush=True)
            for name in stack.check_alive():
                if name == "worker":
                    stack.start_worker()
            row = run_scenario(stack, scenario, plan, run)
            rows.append(row)
            print(f"faults:   {'ok' if row.passed else 'FAILED'} in {row.seconds:.0f} s: "
                  f"accepted {row.accepted}, evaluated {row.evaluated}, lost {row.lost}, "
                  f"duplicated {row.duplicated}", file=sys.stderr, flush=True)
    finally:
        stack.stop()
        if not args.keep and all(r.passed for r in rows):
            shutil.rmtree(workdir, ignore_errors=True)
    text = table(rows)
    print(text)
    print()
    print(footer(plan))
    passed = bool(rows) and all(r.passed for r in rows)
    print(f"\nfaults: {'PASS' if passed else 'FAIL'}: lost = "
          f"{sum(r.lost for r in rows)}, duplicated = {sum(r.duplicated for r in rows)}, "
          f"5xx other than 503 = {sum(r.server_errors for r in rows)} (broker {args.broker})",
          flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("a") as fh:
            fh.write(f"\n### Fault injection ({'quick' if args.quick else 'full'}, broker "
                     f"{args.broker})\n\n"
                     f"- Date: {when}\n- Machine: {machine()}\n- Command: `{command.strip()}`\n\n"
                     f"{text}\n\n{footer(plan)}\n\nResult: {'PASS' if passed else 'FAIL'}\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
