"""Evaluation: building the context, the indexed rule set and the Decision for one event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mecc.clinical.catalogue import SNOMED, GroupSpec, build_catalogue, load_catalogue
from mecc.clinical.domain import (
    ContactEvent,
    EvalContext,
    PastPrompt,
    PersonHistory,
    Preferences,
    RuleDef,
)
from mecc.clinical.ruleset import RuleSet, age_on, build_context, evaluate
from mecc.rules import compile_expression

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_UK = "http://hl7.org/fhir/sid/icd-10-uk"
CATALOGUE = build_catalogue({}, [
    GroupSpec("diabetes_type2", "Type 2 diabetes", True, frozenset({"44054006"}),
              frozenset({"E11"})),
    GroupSpec("copd", "COPD", True, frozenset({"13645005"}), frozenset({"J44"})),
    GroupSpec("hypertension", "Hypertension", True, frozenset({"38341003"}), frozenset({"I10"})),
])


def context(occurred_at: str = "2026-03-01T10:00:00+00:00", *, person: dict | None = None,
            facts: dict | None = None, conditions: list | None = None,
            setting: str | None = "general_practice", contact_type: str | None = "appointment",
            staff_role: str | None = "practice_nurse") -> EvalContext:
    return build_context(
        occurred_at=datetime.fromisoformat(occurred_at),
        person={"age": 40} if person is None else person,
        facts=facts or {}, conditions=conditions or [], setting=setting,
        contact_type=contact_type, staff_role=staff_role, catalogue=CATALOGUE,
    )


# --- age -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("birth", "on", "age"), [
    ("2014-03-01", "2026-02-28", 11),  # the day before the twelfth birthday
    ("2014-03-01", "2026-03-01", 12),  # 12 on the twelfth birthday
    ("2014-03-01", "2026-03-02", 12),
    ("2008-02-29", "2026-02-28", 17),  # leap-day birthday, non-leap year: not yet
    ("2008-02-29", "2026-03-01", 18),  # ...turns over on 1 March
    ("2008-02-29", "2028-02-28", 19),
    ("2008-02-29", "2028-02-29", 20),  # leap year: on the day itself
    ("2026-03-01", "2026-03-01", 0),
    ("1950-12-31", "2026-12-30", 75),
    ("1950-12-31", "2026-12-31", 76),
])
def test_age_on(birth, on, age):
    assert age_on(date.fromisoformat(birth), date.fromisoformat(on)) == age


def test_age_from_birth_date_at_the_events_utc_date():
    # 23:30 on 28 Feb at -05:00 is 04:30 UTC on 1 March: the twelfth birthday.
    ctx = context("2026-02-28T23:30:00-05:00", person={"birth_date": "2014-03-01"})
    assert ctx.facts["age"] == 12
    assert ctx.on == date(2026, 3, 1)
    ctx = context("2026-03-01T00:30:00+01:00", person={"birth_date": date(2014, 3, 1)})
    assert ctx.facts["age"] == 11  # 23:30 UTC on 28 February


def test_sent_age_wins_over_birth_date():
    assert context(person={"age": 30, "birth_date": "2014-03-01"}).facts["age"] == 30


def test_age_absent_without_age_or_birth_date_or_with_a_future_birth_date():
    assert "age" not in context(person={}).facts
    assert "age" not in context(person={"birth_date": "2027-01-01"}).facts


# --- facts ---------------------------------------------------------------------------------------

def test_event_facts_are_merged_into_sent_facts():
    ctx = context(
        person={"age": 52, "sex": "female", "ethnicity_group": "south_asian",
                "postcode_district": "M14", "id": "p-1"},
        facts={"bmi": 28.4, "smoking_status": "current"},
    )
    assert ctx.facts == {
        "bmi": 28.4, "smoking_status": "current", "age": 52, "sex": "female",
        "ethnicity_group": "south_asian", "postcode_district": "M14",
        "setting": "general_practice", "contact_type": "appointment",
        "staff_role": "practice_nurse",
    }


def test_absent_stays_absent_never_none():
    ctx = context(person={"age": 40, "sex": None}, facts={"bmi": None, "phq2": 0},
                  contact_type=None, staff_role=None)
    assert ctx.facts == {"age": 40, "phq2": 0, "setting": "general_practice"}
    assert None not in ctx.facts.values()


def test_false_and_zero_facts_are_kept():
    ctx = context(facts={"is_carer": False, "audit": 0})
    assert ctx.facts["is_carer"] is False and ctx.facts["audit"] == 0


# --- conditions ----------------------------------------------------------------------------------

def test_conditions_map_snomed_icd10_category_and_groups():
    ctx = context(conditions=[
        {"system": SNOMED, "code": "44054006", "onset_date": "2025-09-30"},
        {"system": ICD10, "code": "J44.9"},
        {"system": ICD10_UK, "code": "I10X"},
        {"group": "copd", "onset_date": date(2019, 5, 1)},
    ])
    assert ctx.conditions == {
        "diabetes_type2": date(2025, 9, 30), "copd": date(2019, 5, 1), "hypertension": None,
    }


def test_unknown_codes_systems_and_groups_are_ignored():
    ctx = context(conditions=[
        {"system": SNOMED, "code": "999999999"},
        {"system": ICD10, "code": "Z99.9"},
        {"system": "http://loinc.org", "code": "44054006"},
        {"group": "not_a_group"},
        {"display": "no code at all"},
    ])
    assert ctx.conditions == {}


def test_earliest_onset_per_group_wins():
    ctx = context(conditions=[
        {"system": SNOMED, "code": "44054006", "onset_date": "2024-06-01"},
        {"system": ICD10, "code": "E11.9", "onset_date": "2023-01-15"},
        {"group": "diabetes_type2", "onset_date": "2025-01-01"},
    ])
    assert ctx.conditions == {"diabetes_type2": date(2023, 1, 15)}


@pytest.mark.parametrize("order", [1, -1])
def test_a_known_onset_beats_an_item_without_one(order):
    items = [{"group": "copd"}, {"system": SNOMED, "code": "13645005",
                                 "onset_date": "2020-02-02T10:00:00+00:00"}]
    assert context(conditions=items[::order]).conditions == {"copd": date(2020, 2, 2)}
    assert context(conditions=[{"group": "copd"}, {"group": "copd"}]).conditions == {
        "copd": None}


# --- rule set ------------------------------------------------------------------------------------

class FakeExpression:
    """Stands in for a compiled rule: honours the required_facts contract and counts calls."""

    def __init__(self, required: set[str], test: Callable[[EvalContext], bool | None]):
        self.required_facts = frozenset(required)
        self.test = test
        self.calls = 0

    def evaluate(self, ctx: EvalContext) -> bool | None:
        self.calls += 1
        if not self.required_facts <= ctx.facts.keys():
            return None
        return self.test(ctx)

    def explain(self, ctx: EvalContext) -> list[Any]:
        return [FakeExplanation(sorted(self.required_facts))]


class FakeExplanation:
    def __init__(self, facts: list[str]):
        self.facts = facts

    def to_dict(self) -> dict[str, Any]:
        return {"facts": self.facts}


def make_rule(key: str, topic: str | None = None, priority: int = 50, **extra: Any) -> RuleDef:
    return RuleDef(key=key, version=1, title=key, topic=topic or key,
                   kind="lifestyle_conversation", when="fake", priority=priority, summary=key,
                   status="active", **extra)


def always(ctx: EvalContext) -> bool:
    return True


def test_rules_whose_required_facts_are_missing_are_not_evaluated():
    smoking = FakeExpression({"smoking_status", "age"}, always)
    bmi = FakeExpression({"bmi", "age"}, always)
    rules = RuleSet([(make_rule("smoking"), smoking), (make_rule("bmi"), bmi)])
    matched = rules.matching(context(facts={"smoking_status": "current"}))
    assert [r.key for r, _ in matched] == ["smoking"]
    assert (smoking.calls, bmi.calls) == (1, 0)


def test_a_rule_is_skipped_when_any_required_fact_is_missing():
    expr = FakeExpression({"audit_c", "audit"}, always)
    rules = RuleSet([(make_rule("alcohol"), expr)])
    assert rules.matching(context(facts={"audit_c": 6})) == []
    assert expr.calls == 0
    assert len(rules.matching(context(facts={"audit_c": 6, "audit": 9}))) == 1


def test_rules_without_required_facts_are_always_evaluated():
    not_known = FakeExpression(set(), lambda ctx: "audit" not in ctx.facts)
    has_copd = FakeExpression(set(), lambda ctx: "copd" in ctx.conditions)
    rules = RuleSet([(make_rule("no-audit"), not_known), (make_rule("copd"), has_copd)])
    ctx = context(conditions=[{"group": "copd"}])
    assert sorted(r.key for r, _ in rules.matching(ctx)) == ["copd", "no-audit"]
    assert rules.matching(context(facts={"audit": 3})) == []
    assert (not_known.calls, has_copd.calls) == (2, 2)


def test_index_prefers_a_rare_fact_over_an_event_fact():
    exprs = [FakeExpression({"age", "phq2"}, always) for _ in range(2000)]
    rules = RuleSet([(make_rule(f"r{i:04}"), x) for i, x in enumerate(exprs)])
    assert rules.matching(context(facts={"bmi": 31.0})) == []
    assert sum(x.calls for x in exprs) == 0  # age is present, but the rules are filed by phq2
    assert len(rules.matching(context(facts={"phq2": 4}))) == 2000


def test_fact_frequency_guides_the_index():
    expr = FakeExpression({"bmi", "ethnicity_group"}, always)
    rules = RuleSet([(make_rule("r"), expr)], fact_frequency={"bmi": 0.9,
                                                              "ethnicity_group": 0.05})
    rules.matching(context(facts={"bmi": 30.0}))
    assert expr.calls == 0


def test_unknown_and_false_do_not_match():
    rules = RuleSet([(make_rule("u"), FakeExpression(set(), lambda ctx: None)),
                     (make_rule("f"), FakeExpression(set(), lambda ctx: False))])
    assert rules.matching(context()) == []


def test_rule_set_refuses_a_key_twice_and_lists_its_rules():
    rule = make_rule("dup")
    with pytest.raises(ValueError, match="dup"):
        RuleSet([(rule, FakeExpression(set(), always)), (rule, FakeExpression(set(), always))])
    rules = RuleSet([(make_rule("b", priority=10), FakeExpression(set(), always)),
                     (make_rule("a", priority=90), FakeExpression(set(), always))])
    assert len(rules) == 2 and [r.key for r in rules.rules] == ["a", "b"]
    assert [r.key for r, _ in rules] == ["a", "b"]


FACTS = ["age", "sex", "setting", "bmi", "audit", "audit_c", "phq2", "gad2", "smoking_status"]


def naive_matching(pairs, ctx):
    return sorted((r.key for r, x in pairs if x.evaluate(ctx) is True))


@settings(max_examples=200, deadline=None)
@given(
    rule_specs=st.lists(
        st.tuples(st.frozensets(st.sampled_from(FACTS), max_size=3),
                  st.sampled_from(["all", "absent", "parity"]), st.sampled_from(FACTS),
                  st.integers(1, 100)),
        max_size=40),
    present=st.frozensets(st.sampled_from(FACTS)),
)
def test_indexed_matching_equals_evaluating_every_rule(rule_specs, present):
    tests = {
        "all": lambda fact: always,
        "absent": lambda fact: lambda ctx: fact not in ctx.facts,
        "parity": lambda fact: lambda ctx: (len(ctx.facts) + len(fact)) % 2 == 0,
    }
    pairs = []
    for i, (required, mode, fact, priority) in enumerate(rule_specs):
        # An "absent" rule cannot require the fact whose absence it tests.
        needed = set(required) - {fact} if mode == "absent" else set(required)
        pairs.append((make_rule(f"r{i:03}", priority=priority),
                      FakeExpression(needed, tests[mode](fact))))
    ctx = EvalContext(facts={f: 1 for f in present}, conditions={}, on=date(2026, 1, 1))
    indexed = sorted(r.key for r, _ in RuleSet(pairs).matching(ctx))
    assert indexed == naive_matching(pairs, ctx)


# --- evaluate ------------------------------------------------------------------------------------

def contact(ctx: EvalContext, *, event_id: str = "ev-1", opted_out: bool = False,
            occurred_at: datetime = datetime(2026, 3, 1, 10, tzinfo=UTC)) -> ContactEvent:
    return ContactEvent(id=event_id, occurred_at=occurred_at, organisation="Y02345",
                        setting="general_practice", context=ctx, staff_role="practice_nurse",
                        preferences=Preferences(opted_out=opted_out), person_id="p-1")


def test_evaluate_returns_matches_shown_deferred_and_suppressed():
    pairs = [(make_rule(f"r{p}", priority=p), FakeExpression({"bmi"}, always))
             for p in (10, 20, 30, 40)]
    pairs.append((make_rule("same-topic", topic="r40", priority=5),
                  FakeExpression({"bmi"}, always)))
    pairs.append((make_rule("no-match", priority=99), FakeExpression({"bmi"}, lambda c: False)))
    history = PersonHistory((PastPrompt("r30", "r30", datetime(2026, 2, 1, tzinfo=UTC),
                                        "conversation_had", "ev-0"),))
    ctx = context(facts={"bmi": 31})
    decision = evaluate(contact(ctx), RuleSet(pairs), history, max_prompts_per_contact=2)
    assert [m.rule.key for m in decision.matches] == ["r40", "r30", "r20", "r10", "same-topic"]
    assert all(m.explanation is None for m in decision.matches)
    assert [c.rule.key for c in decision.shown] == ["r40", "r20"]
    assert [c.rule.key for c in decision.deferred] == ["r10"]
    assert [(s.rule_key, s.reason_code) for s in decision.suppressed] == [
        ("r30", "cooldown"), ("same-topic", "same_topic")]


def test_evaluate_explains_on_request_and_serialises():
    pairs = [(make_rule("r", priority=70), FakeExpression({"bmi"}, always))]
    ev = contact(context(facts={"bmi": 31}), opted_out=True)
    decision = evaluate(ev, RuleSet(pairs), PersonHistory(), explain=True)
    assert decision.to_dict() == {
        "event_id": "ev-1",
        "matches": [{"rule": {"key": "r", "version": 1}, "topic": "r", "priority": 70,
                     "explanation": [{"facts": ["bmi"]}]}],
        "shown": [], "deferred": [],
        "suppressed": [{"rule": {"key": "r", "version": 1}, "reason_code": "opted_out",
                        "reason": "The person has opted out of MECC prompts."}],
    }


def test_shown_candidates_serialise_with_status():
    pairs = [(make_rule("r", priority=70), FakeExpression(set(), always))]
    decision = evaluate(contact(context()), RuleSet(pairs), PersonHistory())
    assert decision.to_dict()["shown"] == [{
        "rule": {"key": "r", "version": 1}, "topic": "r", "kind": "lifestyle_conversation",
        "priority": 70, "status": "new"}]


# --- the real rule language through the index ----------------------------------------------------

REAL_CATALOGUE = load_catalogue(Path(__file__).resolve().parents[2] / "config")
NUMBERS = {"age": (0, 100), "bmi": (15, 45), "audit": (0, 40), "audit_c": (0, 12),
           "phq2": (0, 6), "systolic_bp": (90, 200)}


def atoms() -> st.SearchStrategy[str]:
    comparison = st.builds(
        lambda fact, op, value: f"{fact} {op} {value}",
        st.sampled_from(sorted(NUMBERS)), st.sampled_from([">=", "<", "==", "!="]),
        st.integers(0, 60))
    return st.one_of(
        comparison,
        st.sampled_from([
            "smoking_status == 'current'", "smoking_status != 'never'", "is_carer",
            "known('audit')", "!known('audit')", "known('bmi')", "has_condition('copd')",
            "!has_condition('hypertension')", "condition_count() >= 2",
            "ethnicity_group in ['south_asian', 'chinese']",
        ]),
    )


expressions = st.recursive(
    atoms(),
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a} && {b})", inner, inner),
        st.builds(lambda a, b: f"({a} || {b})", inner, inner),
        st.builds(lambda a: f"!({a})", inner),
    ),
    max_leaves=6,
)

fact_values = st.fixed_dictionaries({}, optional={
    **{name: st.integers(lo, hi) for name, (lo, hi) in NUMBERS.items()},
    "smoking_status": st.sampled_from(["current", "ex", "never", "unknown"]),
    "is_carer": st.booleans(),
    "ethnicity_group": st.sampled_from(["south_asian", "white", "chinese"]),
})


@settings(max_examples=150, deadline=None)
@given(sources=st.lists(expressions, min_size=1, max_size=12), facts=fact_values,
       groups=st.frozensets(st.sampled_from(["copd", "hypertension", "asthma"])))
def test_real_expressions_match_the_same_through_the_index(sources, facts, groups):
    pairs = [(make_rule(f"r{i:02}", priority=(i * 37) % 100 + 1),
              compile_expression(source, REAL_CATALOGUE)) for i, source in enumerate(sources)]
    ctx = EvalContext(facts=facts, conditions={g: None for g in groups}, on=date(2026, 1, 1))
    assert sorted(r.key for r, _ in RuleSet(pairs).matching(ctx)) == naive_matching(pairs, ctx)


def test_not_known_rules_are_evaluated_when_their_facts_are_absent():
    alcohol = compile_expression("age >= 18 && !known('audit') && audit_c >= 5", REAL_CATALOGUE)
    no_bmi = compile_expression("!known('bmi')", REAL_CATALOGUE)
    rules = RuleSet([(make_rule("alcohol"), alcohol), (make_rule("no-bmi"), no_bmi)])
    assert "audit" not in alcohol.required_facts and not no_bmi.required_facts
    keys = [r.key for r, _ in rules.matching(context(facts={"audit_c": 5}))]
    assert keys == ["alcohol", "no-bmi"]
    assert [r.key for r, _ in rules.matching(context(facts={"audit_c": 5, "audit": 3,
                                                          "bmi": 22.0}))] == []


def test_a_rule_needing_one_of_several_facts_is_skipped_without_any_of_them() -> None:
    catalogue = REAL_CATALOGUE
    rule = RuleDef(key="either", version=1, title="t", topic="mental_wellbeing",
                   kind="self_management_referral",
                   when="age >= 18 && (phq2 >= 3 || gad2 >= 3)", priority=50, summary="s")
    expression = compile_expression(rule.when, catalogue)
    assert expression.required_any == {frozenset({"age"}), frozenset({"gad2", "phq2"})}
    ruleset = RuleSet([(rule, expression)])

    def ctx(**facts: object) -> EvalContext:
        return EvalContext(facts=facts, conditions={}, on=date(2026, 1, 1))

    assert ruleset.candidates(ctx(age=40, bmi=31.0)) == []
    assert [r.key for r, _ in ruleset.candidates(ctx(age=40, gad2=4))] == ["either"]
    assert [r.key for r, _ in ruleset.candidates(ctx(age=40, gad2=1, phq2=4))] == ["either"]
    assert [r.key for r, _ in ruleset.matching(ctx(age=40, gad2=1, phq2=4))] == ["either"]
    assert ruleset.matching(ctx(age=40, gad2=1, phq2=1)) == []
