"""Properties of the rule language (mecc/rules.py), checked with Hypothesis.

1. Any text either compiles or gives diagnostics: check_expression never raises.
2. Generated well-typed expressions compile, and evaluate exactly as a plain reference
   interpreter of CEL's three-valued logic says, on contexts with random facts missing; what
   `required_facts` and `explain()` report holds on those contexts too.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mecc.clinical.catalogue import GroupSpec, build_catalogue, parse_facts
from mecc.clinical.domain import EvalContext
from mecc.rules import Diagnostic, check_expression, compile_expression

ON = date(2025, 3, 1)
SMOKING = ["current", "ex", "never", "unknown"]
ETHNICITY = ["white", "chinese", "south_asian", "other"]
CATALOGUE = build_catalogue(
    parse_facts(Path("test-facts.yaml"), {"facts": {
        "age": {"type": "int"}, "audit": {"type": "int"}, "bmi": {"type": "double"},
        "smoking_status": {"type": "string", "values": SMOKING},
        "ethnicity_group": {"type": "string"},
        "is_carer": {"type": "bool"}, "lives_alone": {"type": "bool"},
    }}),
    [GroupSpec(g, g, ltc, frozenset(), frozenset())
     for g, ltc in (("copd", True), ("diabetes_type2", True), ("housebound", False))],
)
GROUPS = sorted(CATALOGUE.groups)
LTC = CATALOGUE.ltc_groups
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- 1. any text -------------------------------------------------------------------------------

def assert_diagnostics(source: str) -> None:
    diagnostics = check_expression(source, CATALOGUE)
    assert isinstance(diagnostics, list)
    assert all(isinstance(d, Diagnostic) and d.line >= 1 and d.column >= 1 for d in diagnostics)


@FAST
@given(st.text(max_size=300))
def test_any_text_compiles_or_gives_diagnostics(source: str) -> None:
    assert_diagnostics(source)


TOKENS = [
    "age", "bmi", "is_carer", "smoking_status", "nope", "(", ")", "[", "]", ",", "&&", "||",
    "!", "==", "!=", "<", "<=", ">", ">=", "in", "'current'", "'curent'", '"x"', "'", '"', "1",
    "2.5", "-", "-3", "1e999", "99999999999999999999", "known", "known('bmi')", "known(bmi)",
    "has_condition('copd')", "has_condition", "diagnosed_within_days('copd', 30)",
    "condition_count()", "condition_count", "true", "false", "null", ".", "=", "+", "?", ":",
    "//", "\n", "\\", "'\\q'", "{", "}", "and", "\x00", "é",
]


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=40),
       st.lists(st.sampled_from(["", " ", "\n"]), min_size=40, max_size=40))
def test_token_soup_compiles_or_gives_diagnostics(tokens: list[str], gaps: list[str]) -> None:
    assert_diagnostics("".join(t + g for t, g in zip(tokens, gaps, strict=False)))


# --- 2. well-typed expressions against a reference interpreter ---------------------------------

@dataclass(frozen=True)
class Gen:
    """A generated expression: its source and what it must evaluate to."""

    source: str
    ref: Callable[[EvalContext], Any]


def _compare(op: str, a: Gen, b: Gen) -> Gen:
    def ref(c: EvalContext) -> bool | None:
        x, y = a.ref(c), b.ref(c)
        return None if x is None or y is None else OPS[op](x, y)
    return Gen(f"{a.source} {op} {b.source}", ref)


def _member(a: Gen, items: list[Gen]) -> Gen:
    def ref(c: EvalContext) -> bool | None:
        x = a.ref(c)
        return None if x is None else any(x == i.ref(c) for i in items)
    return Gen(f"{a.source} in [{', '.join(i.source for i in items)}]", ref)


def _fact(name: str) -> Gen:
    return Gen(name, lambda c: c.facts.get(name))


def _literal(value: Any) -> Gen:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = f"'{value}'"
    else:
        text = repr(value)
    return Gen(text, lambda c: value)


def _kleene_and(parts: list[Gen]) -> Gen:
    def ref(c: EvalContext) -> bool | None:
        values = [p.ref(c) for p in parts]
        return False if False in values else (None if None in values else True)
    return Gen(" && ".join(f"({p.source})" for p in parts), ref)


def _kleene_or(parts: list[Gen]) -> Gen:
    def ref(c: EvalContext) -> bool | None:
        values = [p.ref(c) for p in parts]
        return True if True in values else (None if None in values else False)
    return Gen(" || ".join(f"({p.source})" for p in parts), ref)


def _negation(a: Gen) -> Gen:
    def ref(c: EvalContext) -> bool | None:
        x = a.ref(c)
        return None if x is None else not x
    return Gen(f"!({a.source})", ref)


def _within(group: str, days: int) -> Gen:
    def ref(c: EvalContext) -> bool | None:
        if group not in c.conditions:
            return False
        onset = c.conditions[group]
        return None if onset is None else 0 <= (c.on - onset).days <= days
    return Gen(f"diagnosed_within_days('{group}', {days})", ref)


# Small ranges on both sides, so that values often meet the bounds they are compared with.
ints = st.integers(-2, 12).map(_literal)
doubles = st.integers(-4, 24).map(lambda k: _literal(k / 2))
condition_count = st.just(Gen("condition_count()",
                              lambda c: len(LTC.intersection(c.conditions))))
numbers = st.one_of(st.sampled_from(["age", "audit", "bmi"]).map(_fact), ints, doubles,
                    condition_count)
number_facts = st.sampled_from(["age", "audit", "bmi"]).map(_fact)
bool_facts = st.sampled_from(["is_carer", "lives_alone"]).map(_fact)
bool_literals = st.booleans().map(_literal)
operators = st.sampled_from(sorted(OPS))
equality = st.sampled_from(["==", "!="])

leaves = st.one_of(
    st.builds(_compare, operators, numbers, numbers),
    st.builds(_compare, equality, st.just(_fact("smoking_status")),
              st.sampled_from(SMOKING).map(_literal)),
    st.builds(_compare, equality, st.sampled_from(ETHNICITY).map(_literal),
              st.just(_fact("ethnicity_group"))),
    st.builds(_compare, equality, st.just(_fact("ethnicity_group")),
              st.just(_fact("smoking_status"))),
    st.builds(_compare, equality, st.one_of(bool_facts, bool_literals),
              st.one_of(bool_facts, bool_literals)),
    st.builds(_member, number_facts, st.lists(st.one_of(ints, doubles), max_size=4)),
    st.builds(_member, st.just(_fact("smoking_status")),
              st.lists(st.sampled_from(SMOKING).map(_literal), max_size=4)),
    st.builds(_member, st.just(_fact("ethnicity_group")),
              st.lists(st.sampled_from(ETHNICITY).map(_literal), max_size=4)),
    st.builds(_member, bool_facts, st.lists(bool_literals, max_size=2)),
    bool_facts,
    bool_literals,
    st.sampled_from(sorted(CATALOGUE.facts)).map(
        lambda n: Gen(f"known('{n}')", lambda c: n in c.facts)),
    st.sampled_from(GROUPS).map(
        lambda g: Gen(f"has_condition('{g}')", lambda c: g in c.conditions)),
    st.builds(_within, st.sampled_from(GROUPS), st.integers(0, 30)),
    # one fact bounded on both sides: the evaluator merges these pairs
    st.builds(lambda f, lo, hi, a, b: _kleene_and([_compare(a, f, lo), _compare(b, f, hi)]),
              number_facts, st.one_of(ints, doubles), st.one_of(ints, doubles),
              st.sampled_from([">", ">="]), st.sampled_from(["<", "<="])),
)


def _extend(children: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
    return st.one_of(
        children.map(_negation),
        st.lists(children, min_size=2, max_size=4).map(_kleene_and),
        st.lists(children, min_size=2, max_size=4).map(_kleene_or),
        st.builds(lambda a, b: _compare("==", Gen(f"({a.source})", a.ref),
                                        Gen(f"({b.source})", b.ref)), children, children),
    )


expressions = st.recursive(leaves, _extend, max_leaves=12)
contexts = st.builds(
    lambda facts, conditions: EvalContext(facts, conditions, ON),
    st.fixed_dictionaries({}, optional={
        "age": st.integers(0, 12), "audit": st.integers(0, 12),
        "bmi": st.integers(0, 24).map(lambda k: k / 2),
        "smoking_status": st.sampled_from(SMOKING),
        "ethnicity_group": st.sampled_from(ETHNICITY),
        "is_carer": st.booleans(), "lives_alone": st.booleans(),
    }),
    st.dictionaries(st.sampled_from(GROUPS),
                    st.one_of(st.none(), st.integers(-3, 33).map(lambda d: ON - timedelta(d))),
                    max_size=3),
)


@FAST
@given(expressions, st.lists(contexts, min_size=1, max_size=6))
def test_well_typed_expressions_evaluate_as_the_reference(
        expression: Gen, samples: list[EvalContext]) -> None:
    compiled = compile_expression(expression.source, CATALOGUE)
    assert compiled.required_facts <= compiled.facts
    assert all(clause <= compiled.facts for clause in compiled.required_any)
    for context in samples:
        value = compiled.evaluate(context)
        assert value in (True, False, None)
        assert value is expression.ref(context), (expression.source, context)
        if value is True:  # what the indexer relies on
            assert compiled.required_facts <= context.facts.keys()
            for clause in compiled.required_any:
                assert clause & context.facts.keys(), (expression.source, clause, context)
        explained = compiled.explain(context)
        assert all(e.value in (True, False, None) for e in explained)
        assert [e.text for e in explained] == [e.text for e in compiled.explain(context)]


@FAST
@given(expressions, st.data())
def test_mutated_expressions_compile_or_give_diagnostics(expression: Gen,
                                                         data: st.DataObject) -> None:
    source = expression.source
    position = data.draw(st.integers(0, len(source)))
    cut = data.draw(st.integers(0, 3))
    insert = data.draw(st.sampled_from(["", "(", ")", "'", "&&", "!", "<", "[", ",", "x", " "]))
    assert_diagnostics(source[:position] + insert + source[position + cut:])


OPS_MIRRORED = {">": "<", ">=": "<="}


def _cmp(op: str, value: int | None, k: int) -> bool | None:
    return None if value is None else OPS[op](value, k)


def _all(*values: bool | None) -> bool | None:
    return False if False in values else (None if None in values else True)


def _any(*values: bool | None) -> bool | None:
    return True if True in values else (None if None in values else False)


@FAST
@given(st.sampled_from(["age", "bmi"]), st.sampled_from([">", ">="]),
       st.sampled_from(["<", "<="]), st.integers(0, 6), st.integers(0, 6),
       st.one_of(st.none(), st.integers(0, 6)), st.booleans(), st.booleans())
def test_ranges_and_fused_tests_match_the_reference(
        fact: str, low_op: str, high_op: str, low: int, high: int, value: int | None,
        mirrored: bool, nested: bool) -> None:
    # The evaluator merges `x > lo && x < hi` into one range test and folds a `fact op k`
    # operand into its && / ||: boundaries, mirrored constants and unknowns must all survive.
    low_test = f"{low} {OPS_MIRRORED[low_op]} {fact}" if mirrored else f"{fact} {low_op} {low}"
    above, below = _cmp(low_op, value, low), _cmp(high_op, value, high)
    expected = {  # is_carer is true, lives_alone unknown
        f"{low_test} && {fact} {high_op} {high}": _all(above, below),
        f"{fact} {high_op} {high} && is_carer && {low_test}": _all(below, True, above),
        f"{low_test} || lives_alone": _any(above, None),
        f"lives_alone && {low_test}": _all(None, above),
        f"!is_carer || {low_test}": _any(False, above),
    }
    facts: dict[str, Any] = {"is_carer": True}
    if value is not None:
        facts[fact] = value if fact == "age" else float(value)
    context = EvalContext(facts, {}, ON)
    for source, value_expected in expected.items():
        if nested:  # the same shapes one level down
            source = f"false || ({source})"
        assert compile_expression(source, CATALOGUE).evaluate(context) is value_expected, source
