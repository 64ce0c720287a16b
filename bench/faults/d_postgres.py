"""(d) PostgreSQL stopped for a while during intake: only 503s, no 500s, no hangs."""

from __future__ import annotations

import time

from bench.faults.load import Load
from bench.faults.plan import Plan
from bench.faults.stack import Stack


def stop_postgres(stack: Stack, plan: Plan, load: Load) -> list[str]:
    load.wait_fraction(0.3)
    began = time.monotonic()
    stack.pg.stop("fast")
    time.sleep(plan.pg_down_seconds)
    stack.pg.start()
    return [f"PostgreSQL down {time.monotonic() - began:.0f} s"]
