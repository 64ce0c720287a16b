"""Back-tests: how would one rule version have done over the stored events of the last N days?

"How many prompts a day would this create?" An administrator asks for a back-test over the API;
it is stored as `queued` and a worker runs it (`mecc.run_backtest`). The worker streams the
stored events of the window (by `occurred_at`, in time order, in chunks) and evaluates **that
rule version alone** through mecc.clinical.ruleset, exactly as the live pipeline would:

- **Suppression is applied**: the person-centred rules (rule settings and staff roles, opt-out,
  declined topics, recent declines, cooldowns after a conversation or referral, same rule same
  day) run against each person's *stored* prompt history as it stood at that contact, plus this
  back-test's own earlier would-be prompts (so one person seen three times in a day counts once).
- Because the rule is evaluated alone, what other live rules would do at the same contact is not
  simulated: no competition for the per-contact cap, and no one-prompt-per-topic contest.

The result counts events scanned, matches (the condition was true) and would-show (a match that
survives suppression), with the suppressed matches by reason, per day, per setting and per
organisation, how many prompts a clinician would get from it a day (median, p90 and max over
the staff-days with a contact: `totals.per_clinician_day`), and a sample of matched events
(ids, times, settings, organisations: no person data). Nothing else is written. A key bound
to an organisation back-tests only its own events.

Runtime is bounded: the scan stops after BUDGET_SECONDS and keeps what it counted
(`complete: false`); the task's time limits sit above that as a backstop.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.orm import Session

from mecc.admin import rule_store
from mecc.admin.keys import ALL_ORGANISATIONS, Principal
from mecc.clinical.catalogue import Catalogue
from mecc.clinical.domain import PastPrompt, PersonHistory, RuleDef
from mecc.clinical.ruleset import RuleSet, evaluate
from mecc.clinical.suppression import as_utc
from mecc.evaluation.pipeline import contact_event, load_history
from mecc.intake.read import iso
from mecc.platform.db import utcnow
from mecc.platform.errors import (
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    ValidationFailed,
)
from mecc.platform.runtime import Runtime
from mecc.prompts.service import scope_organisation
from mecc.reports.staff_load import distribution
from mecc.store.models import Backtest, Event, Rule, RuleVersion

log = logging.getLogger(__name__)

MAX_DAYS = 365
CHUNK = 500  # events per fetch; their people's history is loaded in one query per chunk
SAMPLE_SIZE = 20
# The scan stops after this long and stores a partial result; the task's soft and hard time
# limits are above it, and below the broker's 300 s visibility timeout (no redelivery of a
# back-test that is still running).
BUDGET_SECONDS = 120.0
SOFT_TIME_LIMIT = 150
TIME_LIMIT = 170
# A back-test queued longer than this (no back-test worker running) no longer counts against
# its key's limit.
QUEUED_COUNTS_FOR = timedelta(minutes=30)


def backtest_dict(row: Backtest, *, now: datetime | None = None) -> dict[str, Any]:
    status, error = row.status, row.error
    started = row.started_at
    if status == "running" and started is not None and (
            (now or utcnow()) - started > timedelta(seconds=TIME_LIMIT + 30)):
        # Its worker was killed (hard time limit, crash) without recording the failure.
        status, error = "failed", "The back-test did not finish within its time limit."
    return {
        "id": row.id, "rule": {"key": row.rule_key, "version": row.version}, "days": row.days,
        "organisation": row.organisation, "status": status, "error": error,
        "requested_by": row.requested_by, "created_at": iso(row.created_at),
        "started_at": iso(row.started_at), "finished_at": iso(row.finished_at),
        "result": row.result, "links": {"self": f"/api/v1/backtests/{row.id}"},
    }


def request_backtest(runtime: Runtime, principal: Principal, key: str, *, version: int | None,
                     days: int, organisation: str | None = None) -> dict[str, Any]:
    """Store a queued back-test and hand it to a worker (after the commit).

    A key may have at most Settings.backtest_max_active_per_key queued or running (429).
    """
    scope = scope_organisation(principal, organisation)
    with runtime.db.session() as session:
        _refuse_too_many_active(session, principal,
                                runtime.settings.backtest_max_active_per_key)
        state = session.get(Rule, key)
        if state is None:
            raise NotFound(f"No rule '{key}'.")
        chosen = version or state.active_version or state.latest_version
        exists = session.scalar(select(RuleVersion.id).where(RuleVersion.key == key,
                                                             RuleVersion.version == chosen))
        if exists is None:
            raise ValidationFailed(f"Rule '{key}' has no version {chosen}.", errors={
                "version": [f"No such version; the latest is {state.latest_version}."]})
        row = Backtest(rule_key=key, version=chosen, days=days,
                       organisation=(scope or ALL_ORGANISATIONS).upper(), status="queued",
                       requested_by=principal.key_id, created_at=utcnow())
        session.add(row)
        session.commit()
        if not runtime.publisher.send_backtest(row.id):  # say so, and keep no orphan
            row.status, row.error, row.finished_at = "failed", "The queue was unavailable.", \
                utcnow()
            session.commit()
            raise ServiceUnavailable("The work queue is unavailable; the back-test was not "
                                     "started. Retry shortly.")
        return backtest_dict(row)


def _refuse_too_many_active(session: Session, principal: Principal, limit: int) -> None:
    """One key's back-tests queued or running (not those whose worker died or that no worker
    ever took: they would block the key for good)."""
    now = utcnow()
    active = session.scalar(select(func.count(Backtest.id)).where(
        Backtest.requested_by == principal.key_id,
        or_(and_(Backtest.status == "queued", Backtest.created_at > now - QUEUED_COUNTS_FOR),
            and_(Backtest.status == "running",
                 Backtest.started_at > now - timedelta(seconds=TIME_LIMIT + 30)))))
    if (active or 0) >= limit:
        raise TooManyRequests(f"This key has {active} back-tests queued or running (at most "
                              f"{limit}); wait for one to finish.", retry_after=30)


def get_backtest(runtime: Runtime, principal: Principal, backtest_id: str) -> dict[str, Any]:
    with runtime.db.session() as session:
        row = session.get(Backtest, backtest_id)
        if row is None or not (principal.is_all_organisations
                               or row.organisation == principal.organisation):
            raise NotFound("No back-test with this id.")
        return backtest_dict(row)


def _claim(session: Session, backtest_id: str, now: datetime) -> bool:
    """queued -> running; also a run whose worker died (its start is older than TIME_LIMIT)."""
    stale = now - timedelta(seconds=TIME_LIMIT)
    claimed = cast(CursorResult[Any], session.execute(
        update(Backtest).where(Backtest.id == backtest_id, or_(
            Backtest.status == "queued",
            and_(Backtest.status == "running", Backtest.started_at < stale)))
        .values(status="running", started_at=now)
        .execution_options(synchronize_session=False)))
    return bool(claimed.rowcount)


def _finish(runtime: Runtime, backtest_id: str, *, status: str,
            result: dict[str, Any] | None = None, error: str | None = None) -> None:
    with runtime.db.session() as session:
        session.execute(update(Backtest).where(Backtest.id == backtest_id).values(
            status=status, result=result, error=error, finished_at=utcnow()))
        session.commit()


def run_backtest(runtime: Runtime, backtest_id: str, *,
                 budget_seconds: float = BUDGET_SECONDS) -> str:
    """Run one queued back-test and store its result; returns the final status.

    Idempotent: a back-test already done (or failed, or running in a live worker) is left alone.
    """
    now = utcnow()
    with runtime.db.session() as session:
        if not _claim(session, backtest_id, now):
            row = session.get(Backtest, backtest_id)
            return row.status if row is not None else "missing"
        session.commit()
        row = session.get(Backtest, backtest_id)
        assert row is not None
        key, version, days, organisation = row.rule_key, row.version, row.days, row.organisation
    cache = runtime.backtest_rules
    try:
        with runtime.db.session() as session:
            stored = session.scalar(select(RuleVersion).where(RuleVersion.key == key,
                                                              RuleVersion.version == version))
            if stored is None:
                _finish(runtime, backtest_id, status="failed",
                        error=f"Rule '{key}' has no version {version}.")
                return "failed"
            rule = rule_store.version_to_rule(stored, runtime.catalogue)
            result = scan(session, rule, rule_store.ruleset_for([rule], cache),
                          runtime.catalogue, since=now - timedelta(days=days), until=now,
                          organisation=None if organisation == ALL_ORGANISATIONS
                          else organisation,
                          max_prompts=runtime.settings.max_prompts_per_contact,
                          budget_seconds=budget_seconds)
    except Exception as exc:
        _finish(runtime, backtest_id, status="failed",
                error=f"The back-test stopped: {type(exc).__name__}.")
        raise
    result.update(days=days, organisation=organisation)
    _finish(runtime, backtest_id, status="done", result=result)
    return "done"


@dataclass
class _Counts:
    events: int = 0
    matches: int = 0
    would_show: int = 0

    def add(self, *, matched: bool, shown: bool) -> None:
        self.events += 1
        self.matches += matched
        self.would_show += shown

    def to_dict(self) -> dict[str, int]:
        return {"events": self.events, "matches": self.matches, "would_show": self.would_show}


@dataclass
class _Tally:
    totals: _Counts = field(default_factory=_Counts)
    per_day: dict[str, _Counts] = field(default_factory=dict)
    per_setting: dict[str, _Counts] = field(default_factory=dict)
    per_organisation: dict[str, _Counts] = field(default_factory=dict)
    suppressed: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    sample: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=SAMPLE_SIZE))
    # Would-be prompts per (member of staff, UTC day) on which they had a contact: the prompt
    # budget this rule would spend.
    per_staff_day: Counter[tuple[str, str]] = field(default_factory=Counter)


def _identities(row: Event) -> list[tuple[str, ...]]:
    # The same person as load_history sees one: by person id within a source, and by the
    # NHS-number hash across sources.
    found: list[tuple[str, ...]] = [("id", row.source, row.person_id)]
    if row.person_key:
        found.append(("key", row.person_key))
    return found


def _events(session: Session, since: datetime, until: datetime,
            organisation: str | None) -> Iterable[list[Event]]:
    query = (select(Event).where(Event.occurred_at >= since, Event.occurred_at < until)
             .order_by(Event.occurred_at, Event.id).execution_options(yield_per=CHUNK))
    if organisation is not None:
        query = query.where(Event.organisation == organisation)
    for chunk in session.scalars(query).partitions():
        yield list(chunk)


def scan(session: Session, rule: RuleDef, ruleset: RuleSet, catalogue: Catalogue, *,
         since: datetime, until: datetime, organisation: str | None, max_prompts: int,
         budget_seconds: float = BUDGET_SECONDS,
         clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Evaluate `rule` alone over the stored events in [since, until); counts, no writes."""
    started = clock()
    tally = _Tally()
    day = since.date()
    while day <= until.date():  # every day of the window, so a chart's axis is the calendar
        tally.per_day[day.isoformat()] = _Counts()
        day += timedelta(days=1)
    # This back-test's latest would-be prompt per person: only "same rule, same day" can be
    # affected by them, since a would-be prompt has no outcome.
    own: dict[tuple[str, ...], PastPrompt] = {}
    complete = True
    for chunk in _events(session, since, until, organisation):
        if clock() - started > budget_seconds:
            complete = False
            break
        history = load_history(session, chunk)
        for row in chunk:
            _evaluate_one(row, rule, ruleset, catalogue, history.get(row.id, []), own, tally,
                          max_prompts)
    days = max(1.0, (until - since).total_seconds() / 86400)
    totals = tally.totals
    return {
        "rule": {"key": rule.key, "version": rule.version},
        "window": {"from": iso(since), "to": iso(until)},
        "complete": complete,
        "suppression_applied": True,
        "totals": {"events_scanned": totals.events, "matches": totals.matches,
                   "would_show": totals.would_show,
                   "suppressed": dict(sorted(tally.suppressed.items())),
                   "errors": tally.errors,
                   "matches_per_day": round(totals.matches / days, 2),
                   "would_show_per_day": round(totals.would_show / days, 2),
                   "per_clinician_day": {**distribution(list(tally.per_staff_day.values())),
                                         "staff_days": len(tally.per_staff_day)}},
        "per_day": [{"day": k, **v.to_dict()} for k, v in tally.per_day.items()],
        "per_setting": _ranked(tally.per_setting, "setting"),
        "per_organisation": _ranked(tally.per_organisation, "organisation"),
        "sample": list(reversed(tally.sample)),  # most recent first
        "seconds": round(clock() - started, 3),
    }


def _ranked(groups: dict[str, _Counts], name: str) -> list[dict[str, Any]]:
    order = sorted(groups, key=lambda k: (-groups[k].matches, -groups[k].events, k))
    return [{name: k, **groups[k].to_dict()} for k in order]


def _evaluate_one(row: Event, rule: RuleDef, ruleset: RuleSet, catalogue: Catalogue,
                  stored: list[PastPrompt], own: dict[tuple[str, ...], PastPrompt],
                  tally: _Tally, max_prompts: int) -> None:
    identities = _identities(row)
    past = list(stored)
    past.extend(own[i] for i in identities if i in own)
    try:
        decision = evaluate(contact_event(row, catalogue), ruleset, PersonHistory(tuple(past)),
                            max_prompts_per_contact=max_prompts)
    except Exception:  # noqa: BLE001 - one unreadable stored event must not end the back-test
        log.exception("back-test could not evaluate an event", extra={"event": row.id})
        tally.errors += 1
        return
    matched = bool(decision.matches)
    shown = bool(decision.shown)
    for counts in (tally.totals,
                   tally.per_day.setdefault(as_utc(row.occurred_at).date().isoformat(),
                                            _Counts()),
                   tally.per_setting.setdefault(row.setting, _Counts()),
                   tally.per_organisation.setdefault(row.organisation, _Counts())):
        counts.add(matched=matched, shown=shown)
    for suppressed in decision.suppressed:
        tally.suppressed[suppressed.reason_code] += 1
    if row.staff_id is not None:
        tally.per_staff_day[(row.staff_id, as_utc(row.occurred_at).date().isoformat())] += shown
    if shown:
        mine = PastPrompt(rule.key, rule.topic, row.occurred_at, "new", row.id, row.organisation)
        for identity in identities:
            own[identity] = mine
    if matched:
        tally.sample.append({
            "event": row.id, "occurred_at": iso(row.occurred_at), "setting": row.setting,
            "organisation": row.organisation, "would_show": shown,
            "suppressed": decision.suppressed[0].reason_code if decision.suppressed else None})
