"""Fault injection: is every accepted event evaluated, and evaluated once, whatever breaks?

Runs the real processes on this machine: the API under gunicorn (mecc.platform.gunicorn_conf), a Celery
worker and Celery beat (the relay), against a Redis and a PostgreSQL cluster of our own (so
they can be crashed, wiped and stopped). For each scenario a load of contact events is POSTed
over HTTP while the fault is injected, then the database is checked the way Jepsen's
total-queue checker counts a queue:

  attempted   events the client tried to send
  accepted    events answered 202 (or 200: the same event again)
  evaluated   accepted events whose row is `evaluated` after a bounded settle wait
  lost        accepted but not evaluated within the bound (still queued, processing, failed,
              or missing from the database)
  duplicated  an event stored or answered twice, a prompt or suppressed match twice for one
              (event, rule), a prompt pushed twice, or more prompts than the rules give
              (each event is for a new person, so its prompts are computed independently
              with the pipeline's own `decide` and compared)

Scenarios: (a) worker children SIGKILLed mid-task, repeatedly; (b) the whole worker SIGKILLed
and restarted; (c1) Redis crashed and restarted (it keeps nothing); (c2) the broker's Redis
database wiped with FLUSHDB; (d) PostgreSQL stopped for a while during intake (only 503s, no
500s, no hangs); (e) duplicate submissions, sequential and concurrent; (f) webhook receivers
misbehaving: one answers 500, then hangs past the sender's timeout, then recovers; another takes
a few deliveries and then answers 410 Gone (see `run_webhooks` for how (f) counts).

Exits non-zero unless lost = 0, duplicated = 0, no 5xx other than 503 and no hung request in
every scenario (and, in (f), every signature verifies and nothing reaches the 410 endpoint
after it was disabled).

    .venv/bin/python bench/faults.py                    # every scenario, 1000 events each
    .venv/bin/python bench/faults.py --quick            # 100 events, fewer faults (CI)
    .venv/bin/python bench/faults.py --scenario a,d --events 300 --output bench/out/f.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

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


# ---------------------------------------------------------------------------------- the stack


class Stack:
    """Our Redis and PostgreSQL, then API, worker and beat, with the shortened lease."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis = harness.OwnRedis(_port(6390), workdir / "redis")
        self.pg = harness.OwnPostgres(_port(5440), Path(tempfile.mkdtemp(prefix="mecc-pg-")))
        self.api_port = harness.free_port()
        self.env: dict[str, str] = {}
        self.api: harness.Proc | None = None
        self.worker: harness.Proc | None = None
        self.beat: harness.Proc | None = None
        self.key = ""
        self.database_url = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        self.redis.start()
        self.pg.start()
        self.database_url = self.pg.create_database("mecc_faults")
        self.env = harness.service_env(
            self.database_url, self.redis.url(0), self.workdir / "var", port=self.api_port,
            MECC_EVALUATION_LEASE_SECONDS=str(LEASE_SECONDS),
            MECC_TASK_TIME_LIMIT=str(TASK_TIME_LIMIT), MECC_LOG_LEVEL="INFO")
        harness.seed(self.env)
        self.key = harness.create_key(self.env)
        self.api = harness.start_api(self.env, self.api_port, self.workdir)
        self.start_worker()
        self.beat = harness.start_beat(self.env, self.workdir)

    def start_worker(self, **extra: str) -> None:
        self.worker = harness.start_worker({**self.env, **extra}, self.workdir, concurrency=2)

    def restart_worker(self, **extra: str) -> None:
        """Stop the worker gently and start it again with `extra` added to its environment."""
        if self.worker is not None:
            self.worker.stop()
        self.start_worker(**extra)

    def restart_beat(self, **extra: str) -> None:
        """The same for beat: a task message carries the time limits of the process that sent
        it, so the sweeps beat sends run under beat's settings, not the worker's."""
        if self.beat is not None:
            self.beat.stop()
        self.beat = harness.start_beat({**self.env, **extra}, self.workdir)

    def check_alive(self) -> list[str]:
        """Names of processes that died on their own (a finding in itself)."""
        procs = {"api": self.api, "worker": self.worker, "beat": self.beat}
        return [name for name, proc in procs.items() if proc is None or not proc.alive()]

    def stop(self) -> None:
        for proc in (self.beat, self.worker, self.api):
            if proc is not None:
                proc.stop()
        self.redis.stop()
        self.pg.destroy()


def _port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return harness.free_port()


# ---------------------------------------------------------------------------------- load


def event_body(scenario: str, run: str, index: int) -> dict[str, Any]:
    """A valid contact event for a new person, its facts varied but reproducible."""
    rng = random.Random(f"{scenario}-{index}")
    facts: dict[str, Any] = {"smoking_status": rng.choice(["current", "ex", "never"]),
                             "bmi": round(rng.uniform(19, 41), 1)}
    if rng.random() < 0.6:
        facts["audit_c"] = rng.randint(0, 12)
    if rng.random() < 0.5:
        facts["phq2"] = rng.randint(0, 6)
    if rng.random() < 0.5:
        facts["systolic_bp"] = rng.randint(100, 175)
    return {
        "event_id": f"{scenario}-{run}-{index:05d}",
        "source": f"faults-{scenario}",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "organisation": "Y02345",
        "setting": rng.choice(["general_practice", "community_pharmacy"]),
        "contact_type": "appointment",
        "staff": {"id": f"st-{rng.randint(1, 20)}", "role": "practice_nurse", "team": "blue"},
        "person": {"id": f"p-{scenario}-{run}-{index}", "age": rng.randint(18, 90),
                   "postcode_district": "M14"},
        "facts": facts,
        "conditions": [{"group": g} for g in rng.sample(GROUPS, rng.choice([0, 0, 1, 2]))],
        "preferences": {"opted_out": False,
                        "declined_topics": ["alcohol"] if rng.random() < 0.2 else []},
    }


@dataclass
class Sent:
    """What the client saw for one event: every answer, the ids it was given."""

    answers: list[int | str] = field(default_factory=list)  # status, "timeout", "refused"
    ids: list[str] = field(default_factory=list)
    created: int = 0  # 202 answers
    slowest: float = 0.0
    missing_retry_after: int = 0


class Load:
    """POSTs events from a pool of clients at a steady rate, in a background thread.

    Each send is retried until it gets a definitive answer (202, 200 or a 4xx), within a
    deadline; 503 and timeouts are retried as an integrator would, and counted.
    """

    def __init__(self, stack: Stack, bodies: list[dict[str, Any]], seconds: float,
                 deadline: float, copies: int = 1, concurrent: bool = False,
                 key: str | None = None) -> None:
        self.stack = stack
        self.key = key or stack.key
        self.bodies = bodies
        self.seconds = seconds
        self.deadline = deadline
        self.copies = copies
        self.concurrent = concurrent
        self.sent: dict[str, Sent] = {b["event_id"]: Sent() for b in bodies}
        self.answered = 0.0  # events fully answered (all their copies)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(timeout=self.seconds + self.deadline + 120)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait_fraction(self, fraction: float, timeout: float = 120) -> None:
        harness.wait_until(lambda: self.answered >= fraction * len(self.bodies) or self.done,
                           timeout, "load progress", 0.05)

    def _run(self) -> None:
        rate = len(self.bodies) / max(self.seconds, 0.1)
        start = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            for i, body in enumerate(self.bodies):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if self.concurrent:
                    barrier = threading.Barrier(self.copies)
                    for _ in range(self.copies):
                        pool.submit(self._send_together, body, barrier)
                else:
                    pool.submit(self._send_copies, body)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.key}"
            self._local.session = session
        return session

    def _send_copies(self, body: dict[str, Any]) -> None:
        for _ in range(self.copies):
            self._send(body)
        with self._lock:
            self.answered += 1

    def _send_together(self, body: dict[str, Any], barrier: threading.Barrier) -> None:
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        self._send(body)
        with self._lock:
            self.answered += 1.0 / self.copies

    def _send(self, body: dict[str, Any]) -> None:
        record = self.sent[body["event_id"]]
        session = self._session()
        deadline = time.monotonic() + self.deadline
        while time.monotonic() < deadline:
            began = time.monotonic()
            try:
                answer = session.post(f"{self.stack.base}/api/v1/events", json=body,
                                      timeout=CLIENT_TIMEOUT)
            except requests.Timeout:
                self._note(record, "timeout", time.monotonic() - began)
                continue
            except requests.ConnectionError:
                self._note(record, "refused", time.monotonic() - began)
                time.sleep(0.5)
                continue
            self._note(record, answer.status_code, time.monotonic() - began)
            if answer.status_code in (200, 202):
                with self._lock:
                    record.ids.append(answer.json()["id"])
                    record.created += answer.status_code == 202
                return
            if answer.status_code == 503:
                if "Retry-After" not in answer.headers:
                    record.missing_retry_after += 1
                time.sleep(0.5)  # sooner than Retry-After: we want to see the recovery
                continue
            if 400 <= answer.status_code < 500:
                return  # definitive: a rejection (and a finding: these bodies are valid)
            time.sleep(0.5)  # 500 and friends: counted, then retried

    def _note(self, record: Sent, answer: int | str, seconds: float) -> None:
        with self._lock:
            record.answers.append(answer)
            record.slowest = max(record.slowest, seconds)


# ---------------------------------------------------------------------------------- checking


@dataclass
class Row:
    scenario: str
    attempted: int = 0
    accepted: int = 0
    evaluated: int = 0
    lost: int = 0
    duplicated: int = 0
    server_errors: int = 0  # 5xx other than 503
    hangs: int = 0
    unanswered: int = 0
    violations: int = 0  # (f): bad signatures, attempts after a 410, a phase not exercised
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not (self.lost or self.duplicated or self.server_errors or self.hangs
                    or self.unanswered or self.violations or self.attempted == 0)


def settle(stack: Stack, source: str, ids: set[str], bound: float) -> float:
    """Wait until every accepted event is evaluated (or failed), at most `bound` seconds."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.database_url)
    began = time.monotonic()
    try:
        while time.monotonic() - began < bound:
            try:
                with engine.connect() as conn:
                    pending = conn.execute(text(
                        "SELECT count(*) FROM events WHERE source = :s AND status IN "
                        "('queued', 'processing')"), {"s": source}).scalar_one()
                    stored = conn.execute(text(
                        "SELECT count(*) FROM events WHERE source = :s"),
                        {"s": source}).scalar_one()
                if pending == 0 and stored >= len(ids):
                    break
            except Exception:  # noqa: BLE001, S110 - the database may still be coming back
                pass
            time.sleep(0.5)
    finally:
        engine.dispose()
    return time.monotonic() - began


def check(stack: Stack, scenario: str, load: Load, row: Row) -> Row:
    from sqlalchemy import func, select

    from mecc.admin.rule_store import LiveRuleCache
    from mecc.clinical.catalogue import load_catalogue
    from mecc.evaluation import pipeline
    from mecc.platform.db import Database
    from mecc.store.models import Event, Prompt, PushMessage, SuppressedMatch

    source = f"faults-{scenario}"
    answers = Counter(a for s in load.sent.values() for a in s.answers)
    row.attempted = len(load.sent)
    accepted = {eid: s for eid, s in load.sent.items() if s.ids}
    row.accepted = len(accepted)
    row.unanswered = row.attempted - row.accepted
    row.server_errors = sum(n for a, n in answers.items()
                            if isinstance(a, int) and a >= 500 and a != 503)
    row.hangs = answers.get("timeout", 0)
    given_ids = {eid: set(s.ids) for eid, s in accepted.items()}

    catalogue = load_catalogue(harness.ROOT / "config")
    db = Database(stack.database_url)
    try:
        with db.session() as session:
            events = list(session.scalars(select(Event).where(Event.source == source)))
            by_event_id: dict[str, list[Event]] = {}
            for event in events:
                by_event_id.setdefault(event.event_id, []).append(event)
            prompts = list(session.execute(
                select(Prompt.event_id, Prompt.rule_key, Prompt.id, Prompt.status)
                .join(Event, Event.id == Prompt.event_id).where(Event.source == source)))
            twice = session.execute(
                select(Prompt.event_id, Prompt.rule_key, func.count())
                .join(Event, Event.id == Prompt.event_id).where(Event.source == source)
                .group_by(Prompt.event_id, Prompt.rule_key).having(func.count() > 1)).all()
            suppressed_twice = session.execute(
                select(SuppressedMatch.event_id, SuppressedMatch.rule_key, func.count())
                .join(Event, Event.id == SuppressedMatch.event_id)
                .where(Event.source == source)
                .group_by(SuppressedMatch.event_id, SuppressedMatch.rule_key)
                .having(func.count() > 1)).all()
            suppressed = list(session.execute(
                select(SuppressedMatch.event_id, SuppressedMatch.rule_key)
                .join(Event, Event.id == SuppressedMatch.event_id)
                .where(Event.source == source)))
            pushes = Counter(session.scalars(
                select(PushMessage.prompt_id).join(Prompt, Prompt.id == PushMessage.prompt_id)
                .join(Event, Event.id == Prompt.event_id)
                .where(Event.source == source, PushMessage.kind == "prompt")))
            ruleset = LiveRuleCache(catalogue).get(session)
    finally:
        db.dispose()

    # Duplicates: stored twice, answered with two ids, created (202) twice, written twice.
    stored_twice = sum(1 for rows in by_event_id.values() if len(rows) > 1)
    two_ids = sum(1 for ids in given_ids.values() if len(ids) > 1)
    created_twice = sum(1 for s in accepted.values() if s.created > 1)
    pushed_twice = sum(1 for n in pushes.values() if n > 1)
    actual: dict[str, set[str]] = {}
    for event_id, rule_key, _, _ in prompts:
        actual.setdefault(event_id, set()).add(rule_key)
    actual_suppressed: dict[str, set[str]] = {}
    for event_id, rule_key in suppressed:
        actual_suppressed.setdefault(event_id, set()).add(rule_key)
    new_prompts = {pid for _, _, pid, status in prompts if status == "new"}
    unpushed = len(new_prompts - set(pushes))

    # Lost: accepted, but not stored, or stored and never evaluated within the bound.
    statuses: Counter[str] = Counter()
    lost = 0
    extra = missing = 0
    delays: list[float] = []
    for event_id, ids in given_ids.items():
        rows = by_event_id.get(event_id, [])
        if not rows or {r.id for r in rows}.isdisjoint(ids):
            statuses["not stored"] += 1
            lost += 1
            continue
        event = rows[0]
        statuses[event.status] += 1
        if event.status != "evaluated":
            lost += 1
            continue
        delays.append((event.evaluated_at - event.received_at).total_seconds())
        _, decision = pipeline.decide(event, ruleset, [], catalogue, 3)
        want = {c.rule.key for c in (*decision.shown, *decision.deferred)}
        want_suppressed = {s.rule_key for s in decision.suppressed}
        got = actual.get(event.id, set())
        got_suppressed = actual_suppressed.get(event.id, set())
        extra += len(got - want) + len(got_suppressed - want_suppressed)
        missing += len(want - got) + len(want_suppressed - got_suppressed)

    row.evaluated = statuses["evaluated"]
    row.lost = lost + missing + unpushed
    row.duplicated = (stored_twice + two_ids + created_twice + len(twice) + len(suppressed_twice)
                      + pushed_twice + extra)
    reclaimed = sum(1 for e in events if e.attempts > 1)
    row.notes.append(f"{len(prompts)} prompts, all as the rules give" if not (extra or missing)
                     else f"prompts differ from the rules: {extra} extra, {missing} missing")
    if reclaimed:
        row.notes.append(f"{reclaimed} event{'s' if reclaimed > 1 else ''} claimed again "
                         "after a claim was cut short")
    if delays:
        delays.sort()
        row.notes.append(f"delay accepted->evaluated p50 {delays[len(delays) // 2]:.2f} s, "
                         f"worst {delays[-1]:.2f} s")
    other = {k: v for k, v in statuses.items() if k != "evaluated"}
    if other:
        row.notes.append("not evaluated: " + ", ".join(f"{k} {v}" for k, v in other.items()))
    for label, count in (("stored twice", stored_twice), ("answered with two ids", two_ids),
                         ("202 twice", created_twice), ("prompt twice", len(twice)),
                         ("suppressed twice", len(suppressed_twice)),
                         ("pushed twice", pushed_twice), ("new prompts not pushed", unpushed)):
        if count:
            row.notes.append(f"{label}: {count}")
    if answers.get(503):
        without = sum(s.missing_retry_after for s in load.sent.values())
        row.notes.append(f"{answers[503]} answers 503"
                         + (f" ({without} without Retry-After)" if without else
                            " (all with Retry-After)"))
        row.server_errors += without
    if row.hangs:
        row.notes.append(f"{row.hangs} requests hung past {CLIENT_TIMEOUT[1]:.0f} s")
    if answers.get("refused"):
        row.notes.append(f"{answers['refused']} connections refused")
    rejected = {a: n for a, n in answers.items() if isinstance(a, int) and 400 <= a < 500}
    if rejected:
        row.notes.append("rejected: " + ", ".join(f"{a}x{n}" for a, n in rejected.items()))
    slowest = max((s.slowest for s in load.sent.values()), default=0.0)
    row.notes.append(f"slowest answer {slowest:.1f} s")
    return row


# ---------------------------------------------------------------------------------- scenarios


Inject = Callable[[Stack, Plan, Load], list[str]]


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


def broker_backlog(stack: Stack, at_least: int, timeout: float) -> int:
    """Tasks waiting in the broker (queued, or delivered and not yet acknowledged), waiting up
    to `timeout` seconds for at least `at_least` so that the fault has something to lose."""
    import redis

    client = redis.Redis.from_url(stack.redis.url(0), socket_connect_timeout=2)
    deadline = time.monotonic() + timeout
    try:
        while True:
            backlog = int(client.llen("celery")) + int(client.hlen("unacked"))
            if backlog >= at_least or time.monotonic() > deadline:
                return backlog
            time.sleep(0.05)
    finally:
        client.close()


def restart_redis(stack: Stack, plan: Plan, load: Load) -> list[str]:
    load.wait_fraction(0.3)
    backlog = broker_backlog(stack, max(10, plan.events // 20), plan.load_seconds / 2)
    stack.redis.restart(down_seconds=plan.redis_down_seconds)
    return [f"Redis crashed with {backlog} tasks in it, down {plan.redis_down_seconds:.0f} s, "
            "restarted empty"]


def wipe_redis(stack: Stack, plan: Plan, load: Load) -> list[str]:
    backlogs = []
    for i in range(plan.flushes):
        load.wait_fraction((i + 1) / (plan.flushes + 1))
        backlogs.append(broker_backlog(stack, max(10, plan.events // 20), plan.load_seconds / 2))
        stack.redis.flushdb(0)
    return [f"FLUSHDB {len(backlogs)}x, with {' and '.join(map(str, backlogs))} tasks in it"]


def stop_postgres(stack: Stack, plan: Plan, load: Load) -> list[str]:
    load.wait_fraction(0.3)
    began = time.monotonic()
    stack.pg.stop("fast")
    time.sleep(plan.pg_down_seconds)
    stack.pg.start()
    return [f"PostgreSQL down {time.monotonic() - began:.0f} s"]


def nothing(stack: Stack, plan: Plan, load: Load) -> list[str]:
    return []


def run_scenario(stack: Stack, scenario: str, plan: Plan, run: str) -> Row:
    if scenario == "f":
        return run_webhooks(stack, plan, run)
    began = time.monotonic()
    row = Row(scenario)
    bodies = [event_body(scenario, run, i) for i in range(plan.events)]
    deadline = plan.pg_down_seconds + 60
    inject: Inject
    if scenario == "e":
        # Half sent three times in a row, half four times at once.
        half = len(bodies) // 2
        first = Load(stack, bodies[:half], plan.load_seconds / 2, deadline, copies=3).start()
        first.join()
        second = Load(stack, bodies[half:], plan.load_seconds / 2, deadline, copies=4,
                      concurrent=True).start()
        second.join()
        load = first
        load.sent.update(second.sent)
        posts = sum(len(s.answers) for s in load.sent.values())
        row.notes.append(f"{half} events sent 3x in a row and {len(bodies) - half} sent 4x at "
                         f"once: {posts} POSTs")
    else:
        inject = {"a": kill_children, "b": kill_worker, "c1": restart_redis, "c2": wipe_redis,
                  "d": stop_postgres}[scenario]
        # Redis faults lose only what waits in the broker: send faster than the worker
        # evaluates, so that a backlog builds up.
        seconds = (min(plan.load_seconds / 4, plan.events / 200) if scenario in ("c1", "c2")
                   else plan.load_seconds)
        load = Load(stack, bodies, seconds, deadline).start()
        row.notes.extend(inject(stack, plan, load))
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


# ---------------------------------------------------------------------------------- (f) webhooks

# The sender's limits (mecc.delivery.webhooks.TIMEOUTS): a receiver slower than this has failed.
HOOK_TIMEOUT = 10.0
HANG_SECONDS = HOOK_TIMEOUT + 2  # a hung request is answered (into a closed socket) after this
HOOK_BASE_DELAY = 1  # MECC_WEBHOOK_BASE_DELAY_SECONDS for the run (production 5 s)
GONE_AFTER = 3  # the 410 receiver accepts this many deliveries, then answers 410 Gone
GONE_EVERY = 5  # one event in five calls the 410 receiver back, the rest the recovering one
# (f) runs the worker and beat with the production time limits: the deliver task's budget is
# its soft time limit less the 10 s timeout, which the fault run's 10 s limit would leave at
# zero, and a hung receiver would outlast the 9 s soft limit. Beat too, because the sweep's
# message carries beat's limits and the worker applies those.
HOOK_WORKER_ENV = {"MECC_TASK_TIME_LIMIT": "60", "MECC_EVALUATION_LEASE_SECONDS": "90",
                   "MECC_WEBHOOK_BASE_DELAY_SECONDS": str(HOOK_BASE_DELAY)}


@dataclass
class Received:
    """One request a receiver got, and what it answered."""

    endpoint: str  # "recovering" | "gone"
    at: float  # time.time() when the body had been read
    webhook_id: str
    answer: int | str  # a status code, or "hang"
    verified: bool
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # the webhook-* ones


class Receiver:
    """Two webhook receivers on 127.0.0.1, each a threaded http.server, misbehaving in phases.

    `recovering` answers 500 for `fail_seconds` from start(), then for `hang_seconds` holds one
    request in two for HANG_SECONDS (past the sender's timeout) and answers 200 to the others,
    then answers 200. `gone` answers 200 to its first GONE_AFTER requests, then 410 Gone.
    Every body's Standard Webhooks signature is checked against the key's secret on arrival.
    """

    def __init__(self, fail_seconds: float, hang_seconds: float) -> None:
        self.fail_seconds = fail_seconds
        self.hang_seconds = hang_seconds
        self.secret = ""
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._started = 0.0
        self._phase_two = 0
        self._gone_seen = 0
        self._servers = {name: self._server(name) for name in ("recovering", "gone")}
        self._threads: list[threading.Thread] = []

    def port(self, endpoint: str) -> int:
        return int(self._servers[endpoint].server_address[1])

    def url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.port(endpoint)}/hooks/{endpoint}"

    def start(self) -> Receiver:
        self._started = time.monotonic()
        for server in self._servers.values():
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            if self._threads:
                server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def requests(self, endpoint: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.endpoint == endpoint]

    def _decide(self, endpoint: str) -> int | str:
        with self._lock:
            if endpoint == "gone":
                self._gone_seen += 1
                return 200 if self._gone_seen <= GONE_AFTER else 410
            since = time.monotonic() - self._started
            if since < self.fail_seconds:
                return 500
            if since < self.fail_seconds + self.hang_seconds:
                self._phase_two += 1
                return "hang" if self._phase_two % 2 else 200
            return 200

    def verify(self, body: bytes, headers: dict[str, str], secret: str | None = None) -> bool:
        from standardwebhooks import Webhook, WebhookVerificationError

        try:
            Webhook(secret or self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError):
            return False
        return True

    def _server(self, endpoint: str) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()
                           if k.lower().startswith("webhook-")}
                answer = receiver._decide(endpoint) if self.path == f"/hooks/{endpoint}" else 404
                verified = receiver.verify(body, headers)
                with receiver._lock:
                    receiver.received.append(Received(
                        endpoint, time.time(), headers.get("webhook-id", ""), answer, verified,
                        body, headers))
                if answer == "hang":
                    time.sleep(HANG_SECONDS)
                    answer = 503
                try:
                    self.send_response(int(answer))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up on a hung request and closed the connection

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        return server


def create_hook_key(stack: Stack, hosts: list[str]) -> tuple[str, str]:
    """`mecc keys create --json --callback-host ...`: the key and its webhook secret."""
    argv = [harness.MECC, "keys", "create", "--json", "--name",
            f"faults-webhooks-{uuid.uuid4().hex[:6]}", "--organisation", "*"]
    for scope in harness.DEFAULT_SCOPES:
        argv += ["--scope", scope]
    for host in hosts:
        argv += ["--callback-host", host]
    out = subprocess.run(argv, env=stack.env, check=True, capture_output=True, text=True,
                         timeout=60)
    created = json.loads(out.stdout.strip().splitlines()[-1])
    return str(created["key"]), str(created["webhook_secret"])


def settle_deliveries(stack: Stack, source: str, bound: float) -> float:
    """Wait until every delivery of these events has ended (succeeded, failed or disabled)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.database_url)
    began = time.monotonic()
    try:
        while time.monotonic() - began < bound:
            with engine.connect() as conn:
                open_ = conn.execute(text(
                    "SELECT count(*) FROM webhook_deliveries d JOIN events e ON e.id = "
                    "d.event_id WHERE e.source = :s AND d.status IN ('pending', 'delivering')"),
                    {"s": source}).scalar_one()
                without = conn.execute(text(
                    "SELECT count(*) FROM events e WHERE e.source = :s AND e.status = "
                    "'evaluated' AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d "
                    "WHERE d.event_id = e.id)"), {"s": source}).scalar_one()
            if open_ == 0 and without == 0:
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    return time.monotonic() - began


def run_webhooks(stack: Stack, plan: Plan, run: str) -> Row:
    """(f) Events with callback URLs to receivers that fail, hang and answer 410.

    Counted per event, as for the other scenarios, and then per webhook delivery:
      lost        an accepted event with no delivery row; a delivery to the recovering
                  receiver that did not end `succeeded` within the settle bound, or that the
                  database calls succeeded while the receiver never answered it 200
      duplicated  more than one delivery row for one (event, endpoint)
      violations  a signature that does not verify; a body for the wrong event or with other
                  prompts than were shown; the 410 endpoint not disabled, a delivery to it
                  neither succeeded (before the 410) nor disabled, or a request reaching it
                  that was claimed after it had been disabled (or a second one for a delivery
                  it already answered); a phase of the receiver that no request reached
    A webhook-id answered 200 and then sent again is noted (Standard Webhooks is at-least-once;
    we retry only on failure, so it should not happen), and so is a request already in flight
    when the 410 disabled its endpoint.
    """
    began = time.monotonic()
    row = Row("f")
    source = "faults-f"
    receiver = Receiver(plan.hook_fail_seconds, plan.hook_hang_seconds)
    try:
        # Loopback is refused unless the allow-list names the address itself (127.0.0.1).
        key, receiver.secret = create_hook_key(
            stack, [f"127.0.0.1:{receiver.port(name)}" for name in ("recovering", "gone")])
        stack.restart_worker(**HOOK_WORKER_ENV)
        stack.restart_beat(**HOOK_WORKER_ENV)
        bodies = []
        for i in range(plan.hook_events):
            body = event_body("f", run, i)
            body["callback_url"] = receiver.url("gone" if i % GONE_EVERY == 0 else "recovering")
            bodies.append(body)
        receiver.start()
        load = Load(stack, bodies, plan.hook_load_seconds, 60, key=key).start()
        load.join()
        accepted_ids = {i for s in load.sent.values() for i in s.ids}
        waited = settle(stack, source, accepted_ids, plan.settle_seconds)
        waited += settle_deliveries(stack, source, max(10.0, plan.settle_seconds - waited))
        # A request hung at the end of the second phase finishes within HANG_SECONDS.
        died = stack.check_alive()
        if died:
            row.notes.append("died on their own: " + ", ".join(died))
            row.server_errors += len(died)
        check(stack, "f", load, row)
        check_webhooks(stack, receiver, load, row, plan)
        row.notes.append(f"settled {waited:.0f} s after the load")
    finally:
        receiver.stop()
        stack.restart_worker()  # back to the fault run's settings for any later scenario
        stack.restart_beat()
    row.seconds = time.monotonic() - began
    return row


def check_webhooks(stack: Stack, receiver: Receiver, load: Load, row: Row, plan: Plan) -> None:
    from sqlalchemy import select

    from mecc.platform.db import Database
    from mecc.store.models import Event, Prompt, PushMessage, WebhookDelivery, WebhookEndpoint

    urls = {receiver.url(name): name for name in ("recovering", "gone")}
    db = Database(stack.database_url)
    try:
        with db.session() as session:
            endpoints = {e.id: e for e in session.scalars(
                select(WebhookEndpoint).where(WebhookEndpoint.url.in_(list(urls))))}
            events = {e.id: e for e in session.scalars(
                select(Event).where(Event.source == "faults-f"))}
            deliveries = list(session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event_id.in_(list(events)))))
            shown: dict[str, set[str]] = {}
            for event_id, prompt_id in session.execute(
                    select(Prompt.event_id, Prompt.id)
                    .join(PushMessage, PushMessage.prompt_id == Prompt.id)
                    .where(Prompt.event_id.in_(list(events)), PushMessage.kind == "prompt")):
                shown.setdefault(event_id, set()).add(prompt_id)
            session.expunge_all()
    finally:
        db.dispose()

    def endpoint_of(delivery: WebhookDelivery) -> str:
        endpoint = endpoints.get(delivery.endpoint_id)
        return urls[endpoint.url] if endpoint is not None else "?"

    # Rows: exactly one per (event, endpoint) for every accepted, evaluated event.
    per_pair = Counter((d.event_id, d.endpoint_id) for d in deliveries)
    extra_rows = sum(n - 1 for n in per_pair.values() if n > 1)
    with_row = {d.event_id for d in deliveries}
    accepted = {i for s in load.sent.values() for i in s.ids}
    evaluated = {i for i in accepted if i in events and events[i].status == "evaluated"}
    no_row = len(evaluated - with_row)
    foreign = sum(1 for d in deliveries if endpoint_of(d) == "?")

    by_id = {d.id: d for d in deliveries}
    requests = receiver.requests("recovering") + receiver.requests("gone")
    per_id: dict[str, list[Received]] = {}
    for r in sorted(requests, key=lambda r: r.at):
        per_id.setdefault(r.webhook_id, []).append(r)
    ok_ids = {i for i, rs in per_id.items() if any(r.answer == 200 for r in rs)}
    # Deliveries answered 200 after at least one failed request (a retry that succeeded).
    recovered = sum(1 for rs in per_id.values() if rs[0].endpoint == "recovering"
                    and rs[0].answer != 200 and any(r.answer == 200 for r in rs))

    # Signatures and bodies.
    bad_signatures = sum(1 for r in requests if not r.verified)
    # The check can fail: the same request does not verify with another key's secret (nor
    # with its body changed), or the count above would prove nothing.
    wrong_secret_rejected = True
    if requests:
        probe = next((r for r in requests if r.verified), requests[0])
        wrong_secret_rejected = not (
            receiver.verify(probe.body, probe.headers, "whsec_" + "QUFB" * 8)
            or receiver.verify(probe.body + b" ", probe.headers))
    unknown = wrong_body = 0
    for r in requests:
        delivery = by_id.get(r.webhook_id)
        if delivery is None or endpoint_of(delivery) != r.endpoint:
            unknown += 1
            continue
        try:
            payload = json.loads(r.body)
            data = payload["data"]
            same = (payload["type"] == "prompts.created"
                    and data["event"]["id"] == delivery.event_id
                    and data["event"]["event_id"] == events[delivery.event_id].event_id
                    and {p["id"] for p in data["prompts"]} == shown.get(delivery.event_id, set()))
        except (ValueError, KeyError, TypeError):
            same = False
        wrong_body += not same

    # The recovering receiver: every delivery succeeded, and the receiver agrees.
    recovering = [d for d in deliveries if endpoint_of(d) == "recovering"]
    statuses = Counter(d.status for d in recovering)
    not_delivered = sum(1 for d in recovering if d.status != "succeeded")
    false_success = sum(1 for d in recovering if d.status == "succeeded" and d.id not in ok_ids)
    answers = Counter(r.answer for r in receiver.requests("recovering"))
    tries = sorted(len(per_id.get(d.id, [])) for d in recovering)
    delays = sorted(
        next(r.at for r in per_id[d.id] if r.answer == 200) - d.created_at.timestamp()
        for d in recovering if d.id in ok_ids)
    resent_after_ok = sum(
        1 for rs in per_id.values()
        if any(r.answer == 200 for r in rs)
        and rs.index(next(r for r in rs if r.answer == 200)) < len(rs) - 1)
    ok_twice = sum(1 for rs in per_id.values() if sum(r.answer == 200 for r in rs) > 1)

    # The 410 receiver: disabled, and nothing claimed after that reaches it.
    gone = [d for d in deliveries if endpoint_of(d) == "gone"]
    gone_endpoint = next((e for e in endpoints.values() if urls[e.url] == "gone"), None)
    disabled_at = (gone_endpoint.disabled_at.timestamp()
                   if gone_endpoint is not None and gone_endpoint.disabled_at else None)
    gone_statuses = Counter(d.status for d in gone)
    gone_unsettled = sum(1 for d in gone if d.status not in ("succeeded", "disabled")
                         or (d.status == "succeeded" and d.id not in ok_ids))
    after_disable = in_flight = 0
    if disabled_at is not None:
        for r in receiver.requests("gone"):
            delivery = by_id.get(r.webhook_id)
            if r.at < disabled_at or delivery is None:
                continue
            claimed = delivery.last_attempt_at.timestamp() if delivery.last_attempt_at else 0
            if claimed >= disabled_at:
                after_disable += 1
            else:
                in_flight += 1
    gone_resent = sum(1 for d in gone if len(per_id.get(d.id, [])) > 1)
    gone_answers = Counter(r.answer for r in receiver.requests("gone"))

    # Phases that no request reached: the scenario did not test what it says.
    unexercised = [name for name, n in (("500", answers[500]), ("hang", answers["hang"]),
                                        ("200 after failing", recovered),
                                        ("410", gone_answers[410])) if not n]

    row.lost += no_row + not_delivered + false_success
    row.duplicated += extra_rows
    row.violations += (bad_signatures + unknown + wrong_body + foreign + gone_unsettled
                       + after_disable + gone_resent + (disabled_at is None) + len(unexercised)
                       + (not wrong_secret_rejected))

    n_ok = len(recovering) - not_delivered
    notes = [
        f"{len(recovering)} events to a receiver answering 500 for {plan.hook_fail_seconds:.0f} s, "
        f"then hanging {HANG_SECONDS:.0f} s (past the {HOOK_TIMEOUT:.0f} s timeout) on 1 "
        f"request in 2 for {plan.hook_hang_seconds:.0f} s, then 200: {n_ok}/{len(recovering)} "
        f"delivered ({recovered} after failed requests) after {answers[500]} x 500 and "
        f"{answers['hang']} hung requests, "
        + (f"{tries[len(tries) // 2]} requests per delivery p50, {tries[-1]} at most, "
           if tries else "")
        + (f"created->delivered p50 {delays[len(delays) // 2]:.1f} s, worst {delays[-1]:.1f} s"
           if delays else "nothing delivered"),
        f"{len(gone)} events to a receiver taking {GONE_AFTER} then answering 410: "
        f"{gone_statuses['succeeded']} delivered before the 410, {gone_statuses['disabled']} "
        f"disabled, endpoint {'disabled' if disabled_at else 'NOT disabled'}, "
        f"{after_disable} attempts after the disable"
        + (f" ({in_flight} already in flight)" if in_flight else ""),
        f"{len(requests) - bad_signatures}/{len(requests)} signatures verified with "
        f"standardwebhooks" + (" (a wrong secret is rejected)" if wrong_secret_rejected
                               else " (a WRONG SECRET ALSO VERIFIES)"),
        f"{resent_after_ok} webhook-ids redelivered after a 200"
        + (f" ({ok_twice} answered 200 twice)" if ok_twice else ""),
        "one delivery row per (event, endpoint)" if not (extra_rows or no_row) else
        f"delivery rows: {no_row} events without one, {extra_rows} extra",
    ]
    findings = [(label, n) for label, n in (
        ("not delivered", not_delivered), ("succeeded but never answered 200", false_success),
        ("bodies for an unknown delivery", unknown), ("bodies not matching the event", wrong_body),
        ("rows for an unexpected endpoint", foreign),
        ("410 deliveries neither delivered nor disabled", gone_unsettled),
        ("410 deliveries sent twice", gone_resent)) if n]
    if findings:
        notes.append("; ".join(f"{label}: {n}" for label, n in findings))
    other = {k: v for k, v in statuses.items() if k != "succeeded"}
    if other:
        notes.append("recovering deliveries not succeeded: "
                     + ", ".join(f"{k} {v}" for k, v in other.items()))
    if unexercised:
        notes.append("phases no request reached: " + ", ".join(unexercised))
    row.notes[:0] = notes


# ---------------------------------------------------------------------------------- report


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=0,
                        help="events per scenario (default 1000; 100 with --quick); (f) "
                             "scales its own 300 (60 with --quick) in proportion")
    parser.add_argument("--quick", action="store_true", help="100 events, fewer faults (CI)")
    parser.add_argument("--scenario", default=",".join(SCENARIOS),
                        help="comma-separated: a, b, c (= c1,c2), c1, c2, d, e, f")
    parser.add_argument("--pg-down", type=float, default=0,
                        help="seconds PostgreSQL stays down in (d) (default 20; 6 with --quick)")
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
    command = ".venv/bin/python bench/faults.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    when = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()

    # A SIGTERM (a CI timeout) still runs the `finally` that stops our servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("faults: stopped by SIGTERM"))
    workdir = Path(tempfile.mkdtemp(prefix="mecc-faults-"))
    print(f"faults: work directory {workdir}", file=sys.stderr, flush=True)
    stack = Stack(workdir)
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
          f"5xx other than 503 = {sum(r.server_errors for r in rows)}", flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("a") as fh:
            fh.write(f"\n### Fault injection ({'quick' if args.quick else 'full'})\n\n"
                     f"- Date: {when}\n- Machine: {machine()}\n- Command: `{command.strip()}`\n\n"
                     f"{text}\n\n{footer(plan)}\n\nResult: {'PASS' if passed else 'FAIL'}\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
