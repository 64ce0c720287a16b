"""Evaluating one contact event: build its context, match the active rules, apply suppression.

Pure domain code. The service layer loads the event and the person's history, calls
`evaluate`, and stores the Decision's prompts (shown and deferred) and suppressions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from mecc.clinical.catalogue import Catalogue
from mecc.clinical.domain import ContactEvent, EvalContext, PersonHistory, RuleDef
from mecc.clinical.recency import contact_facts, evidence
from mecc.clinical.record import as_date, current_conditions, medicine_classes
from mecc.clinical.suppression import (
    DEFAULT_MAX_PROMPTS_PER_CONTACT,
    Candidate,
    Suppressed,
    apply_suppression,
    as_utc,
    rank,
)

# Facts that nearly every event carries (derived from the event itself): a rule indexed on one
# of them would be evaluated for nearly every event, so the index prefers any other fact.
COMMON_FACTS = frozenset({
    "age", "sex", "ethnicity_group", "postcode_district", "setting", "contact_type", "staff_role",
})
_PERSON_FACTS = ("sex", "ethnicity_group", "postcode_district")


class Explanation(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class CompiledExpression(Protocol):
    """What the rule language (mecc.rules) hands back for one rule's `when`."""

    @property
    def required_facts(self) -> frozenset[str]: ...

    def evaluate(self, ctx: EvalContext) -> bool | None: ...

    def explain(self, ctx: EvalContext) -> Sequence[Explanation]: ...


# ---------------------------------------------------------------------------------------------
# Context


def build_context(
    *,
    occurred_at: datetime,
    person: Mapping[str, Any],
    facts: Mapping[str, Any],
    conditions: Sequence[Mapping[str, Any]],
    setting: str | None,
    contact_type: str | None,
    staff_role: str | None,
    catalogue: Catalogue,
    fact_dates: Mapping[str, Any] | None = None,
    medications: Sequence[Mapping[str, Any]] = (),
) -> EvalContext:
    """What rules can read about one contact.

    The sent facts, less those too old (or recorded after the contact) to use, plus the facts
    current coded conditions imply when not sent (mecc.clinical.recency.contact_facts). Event
    facts are merged in: `age` (person.age, else whole years from person.birth_date at
    occurred_at's UTC date), `sex`, `ethnicity_group`, `postcode_district`, `setting`,
    `contact_type` and `staff_role`. Anything not given stays absent (never None). Conditions
    are mapped to current groups (mecc.clinical.record.current_conditions), medicines to
    medicine classes.
    """
    on = as_utc(occurred_at).date()
    recency, states = contact_facts(occurred_at=occurred_at, facts=facts, fact_dates=fact_dates,
                                    conditions=conditions, catalogue=catalogue)
    known = recency.facts
    age = person.get("age")
    if age is None and person.get("birth_date") is not None:
        age = age_on(as_date(person["birth_date"]), on)
    derived = {
        "age": age,
        **{name: person.get(name) for name in _PERSON_FACTS},
        "setting": setting, "contact_type": contact_type, "staff_role": staff_role,
    }
    known.update((name, value) for name, value in derived.items() if value is not None)
    return EvalContext(facts=known, conditions={g: s.onset for g, s in states.items()}, on=on,
                       medicines=medicine_classes(medications, catalogue),
                       fact_dates=recency.dates)


def age_on(birth_date: date, on: date) -> int | None:
    """Whole years from `birth_date` to `on`: a person is 12 on their twelfth birthday.

    Someone born on 29 February turns a year older on 1 March in a non-leap year. A birth date
    after `on` gives None (age unknown) rather than a negative age.
    """
    if birth_date > on:
        return None
    before_birthday = (on.month, on.day) < (birth_date.month, birth_date.day)
    return on.year - birth_date.year - before_birthday


def map_conditions(
    conditions: Sequence[Mapping[str, Any]], catalogue: Catalogue
) -> dict[str, date | None]:
    """Current condition group -> its onset date (None when not known); see
    mecc.clinical.record.current_conditions."""
    return {g: s.onset for g, s in current_conditions(conditions, catalogue).items()}


# ---------------------------------------------------------------------------------------------
# Rule set


@dataclass(frozen=True)
class _Entry:
    rule: RuleDef
    expression: CompiledExpression
    required: frozenset[str]


# (position in rank order, the other required facts or None, the facts of its clause filed
# before this one or None, the compiled test)
_Indexed = tuple[int, frozenset[str] | None, tuple[str, ...] | None,
                 Callable[[EvalContext], bool | None]]


class RuleSet:
    """The active rule versions, compiled once and indexed for fast matching.

    Each rule is filed under one of its required facts (the facts that must all be present for
    its condition to possibly be true), preferring the rarest: an event that lacks that fact
    never looks at the rule. Rules with no required facts (``!known('audit')``,
    ``has_condition('copd')``) are evaluated for every event. `fact_frequency` (share of events
    carrying each fact, 0..1) guides the choice; without it the event-derived facts in
    COMMON_FACTS count as common and every other fact as rare.
    """

    def __init__(
        self,
        entries: Iterable[tuple[RuleDef, CompiledExpression]],
        *,
        fact_frequency: Mapping[str, float] | None = None,
    ) -> None:
        self._entries: list[_Entry] = []
        seen: set[str] = set()
        for rule, expression in sorted(entries, key=lambda pair: rank(pair[0])):
            if rule.key in seen:
                raise ValueError(f"rule {rule.key!r} appears more than once in a rule set")
            seen.add(rule.key)
            self._entries.append(_Entry(rule, expression, frozenset(expression.required_facts)))
        # Most rule sets have no organisation-limited rule: evaluation then skips the filter.
        self.has_organisation_limits = any(e.rule.organisations for e in self._entries)
        # Flat tuples, not objects: this is the inner loop of every evaluation.
        self._always: list[tuple[int, Callable[[EvalContext], bool | None]]] = []
        self._by_fact: dict[str, list[_Indexed]] = {}
        for position, entry in enumerate(self._entries):
            clause = _best_clause(entry, fact_frequency)
            if not clause:
                self._always.append((position, entry.expression.evaluate))
                continue
            # Filed under every fact of the clause; found through the first one present, so
            # under a later fact it is skipped when an earlier one is present. The earlier facts
            # are stored, not searched for per event: searching cost 29% of the matching time
            # at 200 rules (bench/rules.py: 58 -> 41 µs per event).
            order = tuple(sorted(clause))
            for index, key in enumerate(order):
                others = entry.required - {key}
                self._by_fact.setdefault(key, []).append(
                    (position, others or None, order[:index] or None,
                     entry.expression.evaluate))

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[RuleDef, CompiledExpression]]:
        return ((e.rule, e.expression) for e in self._entries)

    @property
    def rules(self) -> list[RuleDef]:
        return [e.rule for e in self._entries]

    def candidates(self, ctx: EvalContext) -> list[tuple[RuleDef, CompiledExpression]]:
        """The rules worth evaluating for `ctx` (every required fact present), in rank order."""
        return [(self._entries[i].rule, self._entries[i].expression)
                for i in sorted(self._candidate_positions(ctx))]

    def matching(self, ctx: EvalContext) -> list[tuple[RuleDef, CompiledExpression]]:
        """The rules whose condition is true for `ctx`, highest priority first."""
        found = [position for position, test in self._always if test(ctx) is True]
        present = ctx.facts.keys()
        for fact in present:
            bucket = self._by_fact.get(fact)
            if bucket is None:
                continue
            for position, others, earlier, test in bucket:
                if earlier is not None and not present.isdisjoint(earlier):
                    continue  # found through an earlier fact of its clause already
                if (others is None or others <= present) and test(ctx) is True:
                    found.append(position)
        found.sort()  # positions are in rank order
        entries = self._entries
        return [(entries[i].rule, entries[i].expression) for i in found]

    def _candidate_positions(self, ctx: EvalContext) -> list[int]:
        present = ctx.facts.keys()
        positions = [position for position, _ in self._always]
        for fact in present:
            for position, others, earlier, _ in self._by_fact.get(fact, ()):
                if earlier is not None and not present.isdisjoint(earlier):
                    continue
                if others is None or others <= present:
                    positions.append(position)
        return positions


def _best_clause(entry: _Entry, frequency: Mapping[str, float] | None) -> frozenset[str]:
    """The requirement clause that rules the rule out for the most events: the one whose
    facts are least likely to be present (any one of them, taken as independent). Empty:
    always evaluate.

    Clauses come from CompiledExpression.required_any (`phq2 >= 3 || gad2 >= 3` gives
    {phq2, gad2}); expressions without it offer one clause per required fact.
    """
    def commonness(fact: str) -> float:
        if frequency is not None and fact in frequency:
            return frequency[fact]
        return 1.0 if fact in COMMON_FACTS else 0.5

    clauses = getattr(entry.expression, "required_any", None)
    if clauses is None:
        clauses = [frozenset({fact}) for fact in entry.required]
    if not clauses:
        return frozenset()
    def chance_any_present(clause: frozenset[str]) -> float:
        absent = 1.0
        for fact in clause:
            absent *= 1.0 - commonness(fact)
        return 1.0 - absent

    return min(clauses, key=lambda c: (chance_any_present(c), sorted(c)))


# ---------------------------------------------------------------------------------------------
# Decision


@dataclass(frozen=True)
class Match:
    """A rule whose condition was true, with which sub-conditions were (when asked to explain)."""

    rule: RuleDef
    explanation: list[Explanation] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rule": {"key": self.rule.key, "version": self.rule.version},
            "topic": self.rule.topic, "priority": self.rule.priority,
        }
        if self.explanation is not None:
            data["explanation"] = [part.to_dict() for part in self.explanation]
        return data


@dataclass(frozen=True)
class Decision:
    """What one contact event gets: every match, then what is shown, deferred and suppressed."""

    event_id: str
    matches: list[Match]
    shown: list[Candidate]
    deferred: list[Candidate]
    suppressed: list[Suppressed]
    # rule key -> what the match rests on: [{"fact", "value", "recorded_at"}] (recency.evidence)
    evidence: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "matches": [m.to_dict() for m in self.matches],
            "shown": [c.to_dict() for c in self.shown],
            "deferred": [c.to_dict() for c in self.deferred],
            "suppressed": [s.to_dict() for s in self.suppressed],
        }


def applies_to_organisation(rule: RuleDef, organisation: str) -> bool:
    """A rule limited to some organisations never applies to another's events (it is not even
    a match there: nothing of it is shown, stored or explained)."""
    return not rule.organisations or organisation in rule.organisations


def evaluate(
    event: ContactEvent,
    rules: RuleSet,
    history: PersonHistory,
    *,
    max_prompts_per_contact: int = DEFAULT_MAX_PROMPTS_PER_CONTACT,
    explain: bool = False,
) -> Decision:
    """Match `rules` against `event` (only rules for its organisation) and apply
    person-centred suppression (mecc.clinical.suppression)."""
    found = rules.matching(event.context)
    if rules.has_organisation_limits:
        found = [(rule, expression) for rule, expression in found
                 if applies_to_organisation(rule, event.organisation)]
    matches = [
        Match(rule, list(expression.explain(event.context)) if explain else None)
        for rule, expression in found
    ]
    result = apply_suppression(
        event, [rule for rule, _ in found], history,
        max_prompts_per_contact=max_prompts_per_contact,
    )
    ctx = event.context
    return Decision(
        event_id=event.id, matches=matches, shown=result.shown, deferred=result.deferred,
        suppressed=result.suppressed,
        evidence={rule.key: evidence(_facts_read(expression), ctx.facts, ctx.fact_dates)
                  for rule, expression in found},
    )


def _facts_read(expression: CompiledExpression) -> frozenset[str]:
    """Every fact the expression reads (a compiled rule knows; a bare test double may not)."""
    facts: frozenset[str] | None = getattr(expression, "facts", None)
    return expression.required_facts if facts is None else facts
