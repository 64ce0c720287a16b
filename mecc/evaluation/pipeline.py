"""Evaluating accepted events: claim, decide, store prompts and suppressions, release.

At-least-once delivery meets exactly-once effects here:
- a worker *claims* events with a conditional update (status queued, or processing with an
  expired lease) and a fresh claim token, so two deliveries never evaluate one event at once;
- the final write succeeds only while the claim token is still ours, in one transaction with
  the prompts and suppressed matches, which are unique per (event, rule);
- a redelivered task finds the event `evaluated` and changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, or_, select, tuple_, update
from sqlalchemy.orm import Session

from mecc.clinical.catalogue import Catalogue
from mecc.clinical.directory import resolve_services
from mecc.clinical.domain import ContactEvent, PastPrompt, PersonHistory, Preferences, Service
from mecc.clinical.ruleset import Decision, RuleSet, build_context, evaluate
from mecc.clinical.suppression import Candidate
from mecc.clinical.templates import render_prompt
from mecc.delivery import push, webhooks
from mecc.platform.db import utcnow
from mecc.reports.attributes import person_attributes
from mecc.store.models import Event, Prompt, PushMessage, SuppressedMatch, new_id

log = logging.getLogger(__name__)

# A claimed event not finished within its lease may be claimed again (its worker died). The
# evaluation service passes Settings.evaluation_lease (MECC_EVALUATION_LEASE_SECONDS), which is
# longer than the task hard time limit, so a live worker is never overtaken.
DEFAULT_LEASE = timedelta(seconds=90)
# Give up after this many claims; the event is marked failed with the reason.
MAX_ATTEMPTS = 5
# How far back a person's history can matter (the longest cooldown/decline allowed).
HISTORY_WINDOW = timedelta(days=3650)


@dataclass
class BatchResult:
    evaluated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not ours to evaluate (done, or claimed)
    failed: list[str] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    pushed: list[PushMessage] = field(default_factory=list)  # for the new (shown) prompts


def claim(session: Session, event_ids: Sequence[str], *, now: datetime | None = None,
          lease: timedelta = DEFAULT_LEASE) -> tuple[str, list[Event]]:
    """Claim the events that are ours to evaluate, for `lease` (caller commits)."""
    now = now or utcnow()
    token = str(uuid.uuid4())
    claimable = or_(Event.status == "queued",
                    and_(Event.status == "processing", Event.next_attempt_at < now))
    session.execute(
        update(Event)
        .where(Event.id.in_(list(event_ids)), claimable)
        .values(status="processing", claim_token=token,
                next_attempt_at=now + lease, attempts=Event.attempts + 1)
        .execution_options(synchronize_session=False))
    rows = list(session.scalars(select(Event).where(Event.claim_token == token)
                                .order_by(Event.occurred_at, Event.id)))
    return token, rows


def release(session: Session, token: str) -> int:
    """Give claimed events back (a transient error): the retry can claim them at once
    instead of waiting for the lease to expire. The claim is not counted against
    MAX_ATTEMPTS: a database blip is not the event's fault. Caller commits."""
    # An UPDATE's result is a CursorResult (SQLAlchemy types execute() more loosely).
    return cast(CursorResult[Any], session.execute(
        update(Event).where(Event.claim_token == token, Event.status == "processing")
        .values(status="queued", claim_token=None, attempts=Event.attempts - 1)
        .execution_options(synchronize_session=False))).rowcount or 0


def contact_event(row: Event, catalogue: Catalogue) -> ContactEvent:
    payload = row.payload
    person = payload.get("person") or {}
    prefs = payload.get("preferences") or {}
    ctx = build_context(
        occurred_at=row.occurred_at, person=person, facts=payload.get("facts") or {},
        conditions=payload.get("conditions") or [], setting=row.setting,
        contact_type=row.contact_type, staff_role=row.staff_role, catalogue=catalogue,
        fact_dates=payload.get("fact_dates"), medications=payload.get("medications") or ())
    return ContactEvent(
        id=row.id, occurred_at=row.occurred_at, organisation=row.organisation,
        setting=row.setting, context=ctx,
        preferences=Preferences(opted_out=bool(prefs.get("opted_out")),
                                declined_topics=frozenset(prefs.get("declined_topics") or ())),
        staff_role=row.staff_role, staff_id=row.staff_id, team=row.team,
        person_id=row.person_id, postcode_district=person.get("postcode_district"))


def load_history(session: Session, events: Iterable[Event]) -> dict[str, list[PastPrompt]]:
    """Past prompts per event, found by person id within a source and NHS-number hash across."""
    events = list(events)
    if not events:
        return {}
    pairs = {(e.source, e.person_id) for e in events}
    person_keys = {e.person_key for e in events if e.person_key}
    since = min(e.occurred_at for e in events) - HISTORY_WINDOW
    who: ColumnElement[bool] = tuple_(Prompt.source, Prompt.person_id).in_(list(pairs))
    if person_keys:
        who = or_(who, Prompt.person_key.in_(list(person_keys)))
    rows = session.execute(
        select(Prompt.rule_key, Prompt.topic, Prompt.contact_at, Prompt.status,
               Prompt.event_id, Prompt.source, Prompt.person_id, Prompt.person_key,
               Prompt.organisation)
        .where(who, Prompt.contact_at >= since))
    out: dict[str, list[PastPrompt]] = {e.id: [] for e in events}
    # Look the batch's events up by person rather than testing every event against every past
    # prompt: that was quadratic, and a third of the worker's time per batch (bench/pipeline.py).
    by_pair: dict[tuple[str, str], list[Event]] = {}
    by_key: dict[str, list[Event]] = {}
    for e in events:
        by_pair.setdefault((e.source, e.person_id), []).append(e)
        if e.person_key is not None:
            by_key.setdefault(e.person_key, []).append(e)
    for r in rows:
        past = PastPrompt(rule_key=r.rule_key, topic=r.topic, contact_at=r.contact_at,
                          status=r.status, event_id=r.event_id, organisation=r.organisation)
        same = by_pair.get((r.source, r.person_id), [])
        if r.person_key is not None and r.person_key in by_key:
            same = same + [e for e in by_key[r.person_key] if e not in same]
        for e in same:
            if e.id != r.event_id:
                out[e.id].append(past)
    return out


def _same_person(a: Event, b: Event) -> bool:
    return (a.source == b.source and a.person_id == b.person_id) or (
        a.person_key is not None and a.person_key == b.person_key)


def build_prompt(row: Event, candidate: Candidate, facts: dict[str, Any],
                 services: Sequence[Service], now: datetime,
                 evidence: list[dict[str, Any]] | None = None) -> Prompt:
    rule = candidate.rule
    summary, detail = render_prompt(rule, facts, {e["fact"]: e["recorded_at"]
                                                  for e in evidence or () if e["recorded_at"]})
    person = row.payload.get("person") or {}
    return Prompt(
        id=new_id(), event_id=row.id, source=row.source, person_id=row.person_id,
        person_key=row.person_key, organisation=row.organisation, setting=row.setting,
        team=row.team, staff_id=row.staff_id, rule_key=rule.key, rule_version=rule.version,
        topic=rule.topic, kind=rule.kind, priority=candidate.priority,
        indicator=rule.indicator, summary=summary, detail=detail,
        suggestions=resolve_services(rule.suggestions, services,
                                     postcode_district=person.get("postcode_district"),
                                     organisation=row.organisation),
        sources=[{"label": s.label, "url": s.url} for s in rule.sources],
        status=candidate.status, contact_at=row.occurred_at, created_at=now, updated_at=now,
        evidence=evidence or [], **person_attributes(facts))


def decide(row: Event, ruleset: RuleSet, history: Sequence[PastPrompt], catalogue: Catalogue,
           max_prompts: int) -> tuple[ContactEvent, Decision]:
    event = contact_event(row, catalogue)
    decision = evaluate(event, ruleset, PersonHistory(tuple(history)),
                        max_prompts_per_contact=max_prompts)
    return event, decision


def evaluate_claimed(session: Session, token: str, rows: Sequence[Event], *, ruleset: RuleSet,
                     services: Sequence[Service], catalogue: Catalogue, max_prompts: int,
                     abort_on: tuple[type[BaseException], ...] = ()) -> BatchResult:
    """Decide every claimed event and write the results (caller commits).

    An exception in `abort_on` (the worker's soft time limit) abandons the whole batch rather
    than failing the one event it happened to interrupt: the claims lapse and the relay sends
    the events again.
    """
    now = utcnow()
    result = BatchResult()
    # Check the claims are still ours *before* deciding or adding anything: one update marks
    # every event still ours as evaluated, and its row locks keep them ours until the commit.
    # An event whose lease expired (another worker owns it now) is skipped and shapes no later
    # event's history. One statement for the batch rather than one per event, which was most
    # of the worker's time (bench/pipeline.py).
    ours = _finish_claimed(session, [row.id for row in rows], token, now=now)
    kept = [row for row in rows if row.id in ours]
    result.skipped.extend(row.id for row in rows if row.id not in ours)
    history = load_history(session, kept)
    earlier = _EarlierInBatch()
    for row in kept:  # in occurred_at order: earlier contacts in a batch shape later ones
        past = list(history[row.id])
        past.extend(PastPrompt(p.rule_key, p.topic, p.contact_at, p.status, p.event_id,
                               p.organisation)
                    for p in earlier.prompts_for(row))
        try:
            event, decision = decide(row, ruleset, past, catalogue, max_prompts)
            prompts = [build_prompt(row, c, dict(event.context.facts), services, now,
                                    decision.evidence.get(c.rule.key))
                       for c in (*decision.shown, *decision.deferred)]
        except abort_on:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad event must not block the batch
            log.exception("evaluation failed", extra={"event": row.id})
            _mark_failed(session, row, reason=f"evaluation error: {type(exc).__name__}")
            result.failed.append(row.id)
            continue
        session.add_all(prompts)
        session.add_all(SuppressedMatch(event_id=row.id, rule_key=s.rule_key,
                                        rule_version=s.rule_version, reason_code=s.reason_code,
                                        reason=s.reason) for s in decision.suppressed)
        messages = [push_message("prompt", p, now) for p in prompts if p.status == "new"]
        session.add_all(messages)
        if row.callback_url:
            webhooks.queue_delivery(session, row, now)
        result.evaluated.append(row.id)
        result.prompts.extend(prompts)
        result.pushed.extend(messages)
        earlier.add(row, prompts)
    if result.pushed:
        push.hold_push_order(session)
    session.flush()  # numbers the push messages
    return result


class _EarlierInBatch:
    """The events of this batch decided so far, looked up by person (not scanned per event)."""

    def __init__(self) -> None:
        self._prompts: list[list[Prompt]] = []
        self._by_pair: dict[tuple[str, str], list[int]] = {}
        self._by_key: dict[str, list[int]] = {}

    def add(self, row: Event, prompts: list[Prompt]) -> None:
        index = len(self._prompts)
        self._prompts.append(prompts)
        self._by_pair.setdefault((row.source, row.person_id), []).append(index)
        if row.person_key is not None:
            self._by_key.setdefault(row.person_key, []).append(index)

    def prompts_for(self, row: Event) -> list[Prompt]:
        """The prompts of the same person's earlier events, in the order they were decided."""
        found = set(self._by_pair.get((row.source, row.person_id), ()))
        if row.person_key is not None:
            found.update(self._by_key.get(row.person_key, ()))
        return [p for index in sorted(found) for p in self._prompts[index]]


def push_message(kind: str, prompt: Prompt, now: datetime) -> PushMessage:
    return PushMessage(kind=kind, prompt_id=prompt.id, organisation=prompt.organisation,
                       team=prompt.team, staff_id=prompt.staff_id, created_at=now)


def _finish_claimed(session: Session, event_ids: Sequence[str], token: str, *,
                    now: datetime) -> set[str]:
    """Mark these events evaluated where the claim is still ours; the ids that were."""
    if not event_ids:
        return set()
    return set(session.scalars(
        update(Event).where(Event.id.in_(list(event_ids)), Event.claim_token == token,
                            Event.status == "processing")
        .values(status="evaluated", status_reason=None, evaluated_at=now, claim_token=None)
        .returning(Event.id)
        .execution_options(synchronize_session=False)))


def _mark_failed(session: Session, row: Event, *, reason: str) -> None:
    """An event of ours (marked evaluated by _finish_claimed in this transaction) that failed."""
    session.execute(
        update(Event).where(Event.id == row.id, Event.status == "evaluated")
        .values(status="failed", status_reason=reason)
        .execution_options(synchronize_session=False))


def due_for_relay(session: Session, *, now: datetime | None = None, limit: int = 1000,
                  resend_after: timedelta = timedelta(seconds=30)) -> tuple[list[str], list[str]]:
    """Events to (re)send: queued past their grace time, or processing past their lease.

    Returns (to_send, gave_up). Claimed with FOR UPDATE SKIP LOCKED on PostgreSQL so several
    relays never send the same rows at once; SQLite serialises writers, and the conditional
    update below is the claim there. Caller commits, then sends.
    """
    now = now or utcnow()
    due = and_(Event.status.in_(("queued", "processing")), Event.next_attempt_at <= now)
    query = select(Event.id, Event.attempts, Event.status).where(due).order_by(
        Event.next_attempt_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = session.execute(query).all()
    give_up = [r.id for r in rows if r.status == "processing" and r.attempts >= MAX_ATTEMPTS]
    send = [r.id for r in rows if r.id not in set(give_up)]
    if give_up:
        session.execute(
            update(Event).where(Event.id.in_(give_up), due)
            .values(status="failed", claim_token=None, evaluated_at=now,
                    status_reason=f"evaluation did not complete after {MAX_ATTEMPTS} attempts")
            .execution_options(synchronize_session=False))
    sent: list[str] = []
    if send:
        # Back to queued: the next claim takes it whatever next_attempt_at says.
        sent = list(session.scalars(
            update(Event).where(Event.id.in_(send), due)
            .values(status="queued", claim_token=None, next_attempt_at=now + resend_after)
            .returning(Event.id)
            .execution_options(synchronize_session=False)))
    return sent, give_up


def fail_dead_lettered(session: Session, event_ids: Sequence[str], *, reason: str,
                       now: datetime | None = None) -> list[str]:
    """Mark failed, with the reason, the events of a message the broker dead-lettered that
    are not evaluated yet (one done by another delivery stays done). Caller commits."""
    if not event_ids:
        return []
    return list(session.scalars(
        update(Event).where(Event.id.in_(list(event_ids)),
                            Event.status.in_(("queued", "processing")))
        .values(status="failed", status_reason=reason, claim_token=None,
                evaluated_at=now or utcnow())
        .returning(Event.id)
        .execution_options(synchronize_session=False)))
