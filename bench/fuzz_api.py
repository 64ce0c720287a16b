"""The long schemathesis run: every operation, every check, every phase, against gunicorn on
PostgreSQL, for as long as asked; its figures go to bench/RESULTS.md.

The same stack and settings as the bounded run in `make test`
(tests/integration/test_schemathesis.py, tests.support.fuzz), with a fresh random seed and far
more examples per operation. Figures: test cases generated, server errors (5xx), responses that
break the documented schema, and failures of any other check.

    .venv/bin/python -m bench.fuzz_api [--max-examples 400] [--max-time 1200] [--no-write]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from bench.common import command_line, machine, machine_markdown, temp_var_dir, write_section
from tests.support.fuzz import fuzz_stack, run_schemathesis, summary
from tests.support.stack import BENCH_REDIS_URL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=400,
                        help="test cases per operation and phase (default 400)")
    parser.add_argument("--max-time", type=int, default=1200,
                        help="stop after this many seconds (default 1200)")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL,
                        help="a Redis database this run may FLUSHDB (default: the benchmarks')")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)

    workdir = temp_var_dir("mecc-fuzz-")
    started = time.monotonic()
    with fuzz_stack(Path(workdir), args.redis_url, prefix="mecc_bench_fuzz") as target:
        done = run_schemathesis(
            target, "--max-examples", str(args.max_examples), "--max-time", str(args.max_time),
            "--seed", str(seed), timeout=args.max_time + 600)
    elapsed = time.monotonic() - started
    figures = summary(done.stdout)
    (Path(workdir) / "schemathesis.txt").write_text(done.stdout + done.stderr)
    print(done.stdout[-6000:])
    print(f"cases {figures['cases']}, server errors {figures['server_errors']}, schema "
          f"violations {figures['schema_violations']}, failures {figures['failures']}, exit "
          f"{done.returncode}, {elapsed:.0f} s; full output in {workdir}/schemathesis.txt")
    if not args.no_write:
        write_section("fuzz", _markdown(figures, seed, elapsed, done.returncode))
    return 0 if done.returncode == 0 else 1


def _markdown(figures: dict[str, int], seed: int, elapsed: float, exit_code: int) -> str:
    return (
        "## Schemathesis: the OpenAPI document against the running API\n\n"
        + machine_markdown(machine())
        + f"- Command: `{command_line()}` (seed {seed}; "
          f"`tests/support/schemathesis.toml`)\n"
        + "- Stack: gunicorn with `mecc.platform.gunicorn_conf` (2 workers) on PostgreSQL, "
          "seeded with the default rules and services; a key for every organisation with "
          "every scope; checks: all; phases: examples, coverage, fuzzing, stateful (the "
          "spec's links). `GET /api/v1/stream` (an endless SSE stream) is left out.\n\n"
        + "| Test cases | Server errors (5xx) | Schema violations | Other failures | "
          "Exit | Time |\n|---:|---:|---:|---:|---:|---:|\n"
        + f"| {figures['cases']:,} | {figures['server_errors']} | "
          f"{figures['schema_violations']} | "
          f"{figures['failures'] - figures['server_errors'] - figures['schema_violations']} | "
          f"{exit_code} | {elapsed / 60:.1f} min |\n")


if __name__ == "__main__":
    sys.exit(main())
