"""Counting a scenario the way a total-queue checker counts a queue: lost and duplicated."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from bench.faults.load import Load
from bench.faults.plan import CLIENT_TIMEOUT
from bench.faults.stack import Stack
from tests.support import ROOT


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

    catalogue = load_catalogue(ROOT / "config")
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
