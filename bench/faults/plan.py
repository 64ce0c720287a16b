"""The settings of a fault run: lease and limits, scenario names, how much load and fault."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

# Short enough to see recovery within a run; the lease must exceed the hard time limit.
LEASE_SECONDS = 15
TASK_TIME_LIMIT = 10
RELAY_PERIOD = 5  # beat schedule (mecc.platform.celery_app)
RELAY_GRACE = 10  # mecc.intake.service.RELAY_GRACE
RESEND_AFTER = 30  # mecc.evaluation.pipeline.due_for_relay
CLIENT_TIMEOUT = (3.0, 10.0)  # connect, read: a request slower than this is a hang
CLIENTS = 8
SCENARIOS = ("a", "b", "c1", "c2", "d", "e", "f")
TITLES = {
    "a": "(a) worker children SIGKILLed mid-task",
    "b": "(b) whole worker SIGKILLed, restarted",
    "c1": "(c) Redis crashed and restarted",
    "c2": "(c) broker Redis database wiped",
    "d": "(d) PostgreSQL stopped during intake",
    "e": "(e) duplicate submissions",
    "f": "(f) webhook receiver failing, hanging, answering 410",
}
# On RabbitMQ (--broker rabbitmq) the broker faults are RabbitMQ's.
RABBITMQ_TITLES = {
    "c1": "(c) RabbitMQ restarted (stop_app, start_app)",
    "c2": "(c) broker queue purged (rabbitmqctl purge_queue)",
}
GROUPS = ("diabetes_type2", "hypertension", "copd", "depression", "coronary_heart_disease",
          "asthma", "osteoarthritis")


@dataclass(frozen=True)
class Plan:
    events: int
    load_seconds: float
    child_kills: int
    worker_restarts: int
    redis_down_seconds: float
    flushes: int
    pg_down_seconds: float
    settle_seconds: float
    hook_events: int  # (f): events with a callback URL, one in five to the 410 receiver
    hook_load_seconds: float
    hook_fail_seconds: float  # the recovering receiver answers 500 this long,
    hook_hang_seconds: float  # then hangs on one request in two this long, then answers 200


def plan_for(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(events=100, load_seconds=6, child_kills=4, worker_restarts=1,
                    redis_down_seconds=3, flushes=1, pg_down_seconds=6, settle_seconds=120,
                    hook_events=60, hook_load_seconds=4, hook_fail_seconds=8,
                    hook_hang_seconds=10)
    else:
        plan = Plan(events=1000, load_seconds=20, child_kills=12, worker_restarts=3,
                    redis_down_seconds=5, flushes=2, pg_down_seconds=20, settle_seconds=240,
                    hook_events=300, hook_load_seconds=10, hook_fail_seconds=15,
                    hook_hang_seconds=15)
    if args.events:
        plan = Plan(**{**plan.__dict__, "events": args.events,
                       "hook_events": max(10, args.events * plan.hook_events // plan.events)})
    if args.pg_down:
        plan = Plan(**{**plan.__dict__, "pg_down_seconds": args.pg_down})
    return plan

