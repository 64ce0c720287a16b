"""The load: contact events POSTed from a pool of clients while a fault is injected."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from bench.faults.plan import CLIENT_TIMEOUT, CLIENTS, GROUPS
from bench.faults.stack import Stack
from tests.support.processes import wait_until


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
        wait_until(lambda: self.answered >= fraction * len(self.bodies) or self.done,
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
