"""(b) The whole worker SIGKILLed (children and all) and started again."""

from __future__ import annotations

import time

from bench.faults.load import Load
from bench.faults.plan import Plan
from bench.faults.stack import Stack


def kill_worker(stack: Stack, plan: Plan, load: Load) -> list[str]:
    load.wait_fraction(0.15)
    down = []
    for _ in range(plan.worker_restarts):
        assert stack.worker is not None
        stack.worker.kill_all()
        began = time.monotonic()
        time.sleep(1.0)
        stack.start_worker()
        down.append(time.monotonic() - began)
        time.sleep(max(1.0, plan.load_seconds / (plan.worker_restarts + 1) - down[-1]))
    return [f"worker killed {len(down)}x, back in {max(down):.1f} s at worst"]
