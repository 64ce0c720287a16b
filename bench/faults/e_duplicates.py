"""(e) Duplicate submissions: the same events sent again, one after another and all at once."""

from __future__ import annotations

from typing import Any

from bench.faults.check import Row
from bench.faults.load import Load
from bench.faults.plan import Plan
from bench.faults.stack import Stack


def send_twice(stack: Stack, plan: Plan, bodies: list[dict[str, Any]], deadline: float,
               row: Row) -> Load:
    """Half the events sent three times in a row, half four times at once; one Load holding
    what the client saw for all of them."""
    half = len(bodies) // 2
    first = Load(stack, bodies[:half], plan.load_seconds / 2, deadline, copies=3).start()
    first.join()
    second = Load(stack, bodies[half:], plan.load_seconds / 2, deadline, copies=4,
                  concurrent=True).start()
    second.join()
    first.sent.update(second.sent)
    posts = sum(len(s.answers) for s in first.sent.values())
    row.notes.append(f"{half} events sent 3x in a row and {len(bodies) - half} sent 4x at "
                     f"once: {posts} POSTs")
    return first
