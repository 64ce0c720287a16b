"""(a) Worker children SIGKILLed mid-task, repeatedly."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from bench.faults.load import Load
from bench.faults.plan import Plan
from bench.faults.stack import Stack


def kill_children(stack: Stack, plan: Plan, load: Load) -> list[str]:
    assert stack.worker is not None
    log_from = stack.worker.log_path.stat().st_size
    load.wait_fraction(0.2)
    rng = random.Random(7)
    killed = 0
    interval = max(0.5, plan.load_seconds * 0.8 / plan.child_kills)
    for _ in range(plan.child_kills):
        victim = busiest_child(stack, rng)
        if victim is not None:
            os.kill(victim, signal.SIGKILL)
            killed += 1
        time.sleep(interval)
    time.sleep(1)  # let the main process notice the last one
    # Celery logs WorkerLostError for a child that died while running a task.
    mid_task = stack.worker.log_text(log_from).count("Task handler raised error: WorkerLostError")
    return [f"{killed} children SIGKILLed {interval:.1f} s apart, {mid_task} of them mid-task "
            "(WorkerLostError)"]


def busiest_child(stack: Stack, rng: random.Random) -> int | None:
    """A worker child that is probably running a task: wait (briefly) until some event is
    being processed, then take the child that used the most CPU over a few ticks."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.database_url)
    try:
        deadline = time.monotonic() + 2
        with engine.connect() as conn:
            while time.monotonic() < deadline and not conn.execute(text(
                    "SELECT 1 FROM events WHERE status = 'processing' LIMIT 1")).first():
                conn.rollback()
                time.sleep(0.01)
    finally:
        engine.dispose()
    assert stack.worker is not None
    children = stack.worker.children()
    if not children:
        return None
    before = {pid: cpu_ticks(pid) for pid in children}
    time.sleep(0.03)
    used = {pid: cpu_ticks(pid) - ticks for pid, ticks in before.items()}
    most = max(used.values())
    return rng.choice([pid for pid, n in used.items() if n == most])


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1
    return int(fields[11]) + int(fields[12])  # utime + stime
