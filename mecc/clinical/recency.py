"""Recency: which facts are recent enough to use at a contact, and what a prompt rests on.

Pure domain code (RULE-PACK.md, "Recency"). A fact whose value was recorded longer ago than its
catalogue `max_age_days` at the contact's occurred_at is not used; neither is one recorded after
the contact (it was not known then). A fact sent without a date is taken as current at the
contact. JSON events, the FHIR mapper and CDS Hooks all call `apply_recency`, so a value is
judged the same way whichever door it came in by.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from mecc.clinical.catalogue import Catalogue
from mecc.clinical.record import ConditionState, as_date, current_conditions, implied_facts

# A date-time a few minutes after the contact is clock skew between systems, not a later value.
CLOCK_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class IgnoredFact:
    fact: str
    recorded_at: str  # as sent: a date or a date-time with offset
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"fact": self.fact, "recorded_at": self.recorded_at, "reason": self.reason}


@dataclass(frozen=True)
class Recency:
    facts: dict[str, Any]  # the facts to use
    dates: dict[str, str]  # when each used fact was recorded, where known
    ignored: list[IgnoredFact] = field(default_factory=list)


def recorded_text(value: date | datetime | str) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def after_contact(recorded: date | datetime | str, occurred_at: datetime) -> bool:
    if isinstance(recorded, str) and len(recorded.strip()) > 10:
        recorded = datetime.fromisoformat(recorded.strip().replace("Z", "+00:00"))
    if isinstance(recorded, datetime):
        if recorded.tzinfo is None:
            return recorded.date() > as_date(occurred_at)
        return recorded > occurred_at + CLOCK_TOLERANCE
    return as_date(recorded) > as_date(occurred_at)


def judge(fact: str, recorded: date | datetime | str, occurred_at: datetime,
          catalogue: Catalogue) -> str | None:
    """Why a value of `fact` recorded at `recorded` is not used at the contact; None: use it."""
    if after_contact(recorded, occurred_at):
        return "recorded after the contact"
    spec = catalogue.facts.get(fact)
    if spec is None or spec.max_age_days is None:
        return None
    age = (as_date(occurred_at) - as_date(recorded)).days
    if age > spec.max_age_days:
        return f"older than {spec.max_age_days} days at the contact ({age} days)"
    return None


def apply_recency(facts: Mapping[str, Any], fact_dates: Mapping[str, Any] | None,
                  occurred_at: datetime, catalogue: Catalogue) -> Recency:
    """The facts recent enough to use at `occurred_at`, their dates, and those left out."""
    fact_dates = fact_dates or {}
    used: dict[str, Any] = {}
    dates: dict[str, str] = {}
    ignored: list[IgnoredFact] = []
    for name, value in facts.items():
        if value is None:
            continue
        recorded = fact_dates.get(name)
        if recorded is None:
            used[name] = value
            continue
        reason = judge(name, recorded, occurred_at, catalogue)
        if reason is None:
            used[name] = value
            dates[name] = recorded_text(recorded)
        else:
            ignored.append(IgnoredFact(name, recorded_text(recorded), reason))
    return Recency(used, dates, ignored)


def evidence(facts_read: Iterable[str], facts: Mapping[str, Any],
             dates: Mapping[str, str]) -> list[dict[str, Any]]:
    """What a prompt rests on: each fact its rule read that the contact knew, with its date
    (None when it was sent without one, or is derived from the contact itself)."""
    return [{"fact": name, "value": facts[name], "recorded_at": dates.get(name)}
            for name in sorted(facts_read) if facts.get(name) is not None]


def contact_facts(*, occurred_at: datetime, facts: Mapping[str, Any],
                  fact_dates: Mapping[str, Any] | None, conditions: Sequence[Mapping[str, Any]],
                  catalogue: Catalogue) -> tuple[Recency, dict[str, ConditionState]]:
    """The facts usable at a contact and its current conditions.

    The sent facts, plus the facts that current coded conditions imply where the event does not
    send them (a moderate-frailty code: efi_category = moderate, dated by the code), with
    recency applied to all of them.
    """
    states = current_conditions(conditions, catalogue)
    merged = {name: value for name, value in facts.items() if value is not None}
    dates = dict(fact_dates or {})
    for fact, (value, day) in implied_facts(states, catalogue).items():
        if fact in merged:
            continue
        merged[fact] = value
        if day is None:
            dates.pop(fact, None)
        else:
            dates[fact] = day.isoformat()
    return apply_recency(merged, dates, occurred_at, catalogue), states
