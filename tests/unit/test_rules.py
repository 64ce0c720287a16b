"""The rule expression language (mecc/rules.py): operators, unknowns, functions, diagnostics."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from mecc.clinical.catalogue import Catalogue, GroupSpec, build_catalogue, parse_facts
from mecc.clinical.domain import EvalContext
from mecc.rules import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_NODES,
    CompiledExpression,
    Diagnostic,
    Explanation,
    RuleCompileError,
    check_expression,
    compile_expression,
)

ON = date(2025, 3, 1)
FACTS = {
    "age": {"type": "int", "min": 0, "max": 130},
    "audit": {"type": "int", "min": 0, "max": 40},
    "audit_c": {"type": "int", "min": 0, "max": 12},
    "bmi": {"type": "double", "min": 10, "max": 100},
    "hba1c_mmol_mol": {"type": "double"},
    "smoking_status": {"type": "string", "values": ["current", "ex", "never", "unknown"]},
    "ethnicity_group": {"type": "string"},
    "is_carer": {"type": "bool"},
    "lives_alone": {"type": "bool"},
}


def _group(name: str, ltc: bool = True) -> GroupSpec:
    return GroupSpec(name=name, title=name, ltc=ltc, snomed=frozenset(), icd10=frozenset())


CATALOGUE: Catalogue = build_catalogue(
    parse_facts(Path("test-facts.yaml"), {"facts": FACTS}),
    [_group("diabetes_type1"), _group("diabetes_type2"), _group("copd"),
     _group("housebound", ltc=False)],
)


def ctx(conditions: dict[str, date | None] | None = None, on: date = ON,
        **facts: Any) -> EvalContext:
    return EvalContext(facts=facts, conditions=conditions or {}, on=on)


def compiled(source: str) -> CompiledExpression:
    return compile_expression(source, CATALOGUE)


def evaluate(source: str, context: EvalContext | None = None) -> bool | None:
    return compiled(source).evaluate(context or ctx())


def only_diagnostic(source: str) -> Diagnostic:
    diagnostics = check_expression(source, CATALOGUE)
    assert len(diagnostics) == 1, diagnostics
    return diagnostics[0]


# --- three-valued logic ------------------------------------------------------------------------

T, F, U = True, False, None


def bools(a: bool | None, b: bool | None) -> EvalContext:
    """is_carer = a, lives_alone = b; None leaves the fact out (unknown)."""
    facts = {name: v for name, v in (("is_carer", a), ("lives_alone", b)) if v is not None}
    return ctx(**facts)


@pytest.mark.parametrize(("a", "b", "expected"), [
    (T, T, T), (T, F, F), (T, U, U),
    (F, T, F), (F, F, F), (F, U, F),
    (U, T, U), (U, F, F), (U, U, U),
])
def test_and_truth_table(a: bool | None, b: bool | None, expected: bool | None) -> None:
    assert evaluate("is_carer && lives_alone", bools(a, b)) is expected
    assert evaluate("lives_alone && is_carer", bools(a, b)) is expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    (T, T, T), (T, F, T), (T, U, T),
    (F, T, T), (F, F, F), (F, U, U),
    (U, T, T), (U, F, U), (U, U, U),
])
def test_or_truth_table(a: bool | None, b: bool | None, expected: bool | None) -> None:
    assert evaluate("is_carer || lives_alone", bools(a, b)) is expected
    assert evaluate("lives_alone || is_carer", bools(a, b)) is expected


@pytest.mark.parametrize(("a", "expected"), [(T, F), (F, T), (U, U)])
def test_not_truth_table(a: bool | None, expected: bool | None) -> None:
    assert evaluate("!is_carer", bools(a, None)) is expected
    assert evaluate("!(is_carer)", bools(a, None)) is expected
    assert evaluate("!!is_carer", bools(a, None)) is a


def three_way(values: tuple[bool | None, ...]) -> EvalContext:
    """is_carer, lives_alone and `age >= 18` with these truth values (None: the fact unknown)."""
    facts = {n: v for n, v in zip(("is_carer", "lives_alone"), values[:2], strict=True)
             if v is not None}
    if values[2] is not None:
        facts["age"] = 50 if values[2] else 10
    return ctx(**facts)


@pytest.mark.parametrize(("values", "expected"), [
    ((T, T, T), T), ((T, U, T), U), ((U, F, T), F), ((T, T, F), F), ((U, U, U), U),
])
def test_three_and_four_way_and(values: tuple[bool | None, ...], expected: bool | None) -> None:
    context = three_way(values)
    assert evaluate("is_carer && lives_alone && age >= 18", context) is expected
    assert evaluate("age >= 18 && is_carer && lives_alone", context) is expected
    assert evaluate("is_carer && lives_alone && age >= 18 && true", context) is expected


@pytest.mark.parametrize(("values", "expected"), [
    ((F, F, F), F), ((F, U, F), U), ((U, T, F), T), ((F, F, T), T), ((U, U, U), U),
])
def test_three_and_four_way_or(values: tuple[bool | None, ...], expected: bool | None) -> None:
    context = three_way(values)
    assert evaluate("is_carer || lives_alone || age >= 18", context) is expected
    assert evaluate("age >= 18 || is_carer || lives_alone", context) is expected
    assert evaluate("is_carer || lives_alone || age >= 18 || false", context) is expected


def test_unknown_is_absorbed_like_cel_errors() -> None:
    nothing = ctx()
    assert evaluate("bmi > 30 || true", nothing) is True
    assert evaluate("bmi > 30 || false", nothing) is None
    assert evaluate("bmi > 30 && false", nothing) is False
    assert evaluate("bmi > 30 && true", nothing) is None
    assert evaluate("!(bmi > 30)", nothing) is None
    assert evaluate("true || bmi > 30", nothing) is True
    assert evaluate("false && bmi > 30", nothing) is False


def test_an_unknown_condition_does_not_match() -> None:
    expression = compiled("bmi >= 30")
    assert expression.evaluate(ctx()) is None
    assert expression.matches(ctx()) is False
    assert expression.matches(ctx(bmi=31.0)) is True
    assert expression.matches(ctx(bmi=29.0)) is False


# --- comparisons -------------------------------------------------------------------------------

@pytest.mark.parametrize(("op", "below", "equal", "above"), [
    ("==", F, T, F), ("!=", T, F, T), ("<", T, F, F),
    ("<=", T, T, F), (">", F, F, T), (">=", F, T, T),
])
def test_each_comparison_operator(op: str, below: bool, equal: bool, above: bool) -> None:
    for value, expected in ((29, below), (30, equal), (31, above)):
        assert evaluate(f"age {op} 30", ctx(age=value)) is expected
        assert evaluate(f"bmi {op} 30.0", ctx(bmi=float(value))) is expected
        # the constant on the left is mirrored, not misread
        assert evaluate(f"30 {op} age", ctx(age=60 - value)) is expected
    assert evaluate(f"age {op} 30", ctx()) is None
    assert evaluate(f"30 {op} age", ctx()) is None
    assert evaluate(f"age {op} audit", ctx(age=3)) is None
    assert evaluate(f"age {op} audit", ctx(audit=3)) is None


def test_fact_against_fact() -> None:
    assert evaluate("audit_c <= audit", ctx(audit=10, audit_c=5)) is True
    assert evaluate("audit_c > audit", ctx(audit=10, audit_c=5)) is False
    assert evaluate("age < bmi", ctx(age=30, bmi=30.5)) is True
    assert evaluate("smoking_status == ethnicity_group", ctx(smoking_status="x",
                                                            ethnicity_group="x")) is True
    assert evaluate("is_carer == lives_alone", ctx(is_carer=True, lives_alone=False)) is False


def test_ints_and_doubles_compare_freely() -> None:
    assert evaluate("1 == 1.0") is True
    assert evaluate("2 < 2.5") is True
    assert evaluate("age == 30.0", ctx(age=30)) is True
    assert evaluate("age < 30.5", ctx(age=30)) is True
    assert evaluate("bmi == 30", ctx(bmi=30.0)) is True
    assert evaluate("bmi >= 30", ctx(bmi=29.99)) is False
    assert evaluate("age in [30.0, 31.5]", ctx(age=30)) is True
    assert evaluate("bmi in [30, 31]", ctx(bmi=31.0)) is True
    assert evaluate("bmi in [30, 31]", ctx(bmi=31.5)) is False


def test_negative_numbers_and_exponents() -> None:
    assert evaluate("-1 < age", ctx(age=0)) is True
    assert evaluate("bmi > -1.5", ctx(bmi=-1.0)) is True
    assert evaluate("age >= -0", ctx(age=0)) is True
    assert evaluate("bmi < 1e2", ctx(bmi=99.5)) is True
    assert evaluate("bmi < 1.5e1", ctx(bmi=16.0)) is False


def test_ranges_of_one_fact() -> None:
    expression = compiled("hba1c_mmol_mol >= 42 && hba1c_mmol_mol <= 47")
    for value, expected in ((41.9, F), (42.0, T), (47, T), (47.1, F)):
        assert expression.evaluate(ctx(hba1c_mmol_mol=value)) is expected
    assert expression.evaluate(ctx()) is None
    exclusive = compiled("age < 65 && is_carer && 18 < age")
    assert exclusive.evaluate(ctx(age=18, is_carer=True)) is False
    assert exclusive.evaluate(ctx(age=19, is_carer=True)) is True
    assert exclusive.evaluate(ctx(age=65, is_carer=True)) is False
    assert exclusive.evaluate(ctx(age=30)) is None
    assert exclusive.evaluate(ctx(age=70)) is False


def test_strings_in_either_quote_with_escapes() -> None:
    assert evaluate("smoking_status == 'current'", ctx(smoking_status="current")) is True
    assert evaluate('smoking_status == "current"', ctx(smoking_status="current")) is True
    assert evaluate("smoking_status != 'current'", ctx(smoking_status="ex")) is True
    assert evaluate(r"ethnicity_group == 'o\'neill'", ctx(ethnicity_group="o'neill")) is True
    assert evaluate(r'ethnicity_group == "a\"b\\c\n"', ctx(ethnicity_group='a"b\\c\n')) is True


def test_in_lists() -> None:
    higher_risk = "ethnicity_group in ['south_asian', 'chinese']"
    assert evaluate(higher_risk, ctx(ethnicity_group="chinese")) is True
    assert evaluate(higher_risk, ctx(ethnicity_group="white")) is False
    assert evaluate(higher_risk, ctx()) is None
    assert evaluate("!(" + higher_risk + ")", ctx(ethnicity_group="white")) is True
    assert evaluate("age in []", ctx(age=3)) is False
    assert evaluate("age in []", ctx()) is None
    assert evaluate("is_carer in [true]", ctx(is_carer=True)) is True
    assert evaluate("smoking_status in ['ex', 'never',]", ctx(smoking_status="never")) is True
    assert evaluate("'a' in ['a', 'b']") is True
    assert evaluate("(age > 1) in [false]", ctx(age=0)) is True


def test_bool_facts_used_bare() -> None:
    assert evaluate("is_carer", ctx(is_carer=True)) is True
    assert evaluate("is_carer", ctx(is_carer=False)) is False
    assert evaluate("!lives_alone", ctx(lives_alone=False)) is True
    assert evaluate("is_carer && age >= 18", ctx(is_carer=True, age=40)) is True
    assert evaluate("is_carer == true", ctx(is_carer=True)) is True
    assert evaluate("is_carer != false", ctx()) is None
    assert evaluate("(age > 3) == is_carer", ctx(age=4, is_carer=True)) is True


def test_precedence_follows_cel() -> None:
    # ! binds tighter than ==, as in CEL: (!is_carer) == lives_alone
    assert evaluate("!is_carer == lives_alone", ctx(is_carer=True, lives_alone=False)) is True
    # && binds tighter than ||
    assert evaluate("true || false && false") is True
    assert evaluate("(true || false) && false") is False


def test_comments_and_line_breaks() -> None:
    source = "age >= 18 // adults\n  && is_carer // and carers\n"
    assert evaluate(source, ctx(age=20, is_carer=True)) is True


def test_evaluation_never_raises_on_values_of_the_wrong_type() -> None:
    # Intake validates facts against the catalogue; should anything slip through, the
    # comparison is unknown rather than an exception in the worker.
    assert evaluate("bmi >= 30", ctx(bmi="thirty")) is None
    assert evaluate("bmi >= 30 || true", ctx(bmi="thirty")) is True
    assert evaluate("bmi >= 25 && bmi < 30", ctx(bmi="x")) is None
    assert evaluate("age in [1, 2]", ctx(age=[1])) is None
    assert evaluate("age < audit", ctx(age=1, audit="x")) is None
    assert evaluate("is_carer", ctx(is_carer="yes")) is None
    assert evaluate("!is_carer", ctx(is_carer=1)) is None
    assert evaluate("(age > 1) in [true]", ctx(age="x")) is None


# --- functions ---------------------------------------------------------------------------------

def test_known() -> None:
    assert evaluate("known('audit')", ctx(audit=3)) is True
    assert evaluate("known('audit')", ctx()) is False
    assert evaluate("!known('audit')", ctx()) is True
    assert evaluate('known("audit")', ctx(audit=0)) is True
    rule = "!known('audit') && audit_c >= 5"
    assert evaluate(rule, ctx(audit_c=6)) is True
    assert evaluate(rule, ctx(audit_c=6, audit=3)) is False
    assert evaluate(rule, ctx()) is None


def test_has_condition_is_never_unknown() -> None:
    assert evaluate("has_condition('copd')", ctx({"copd": None})) is True
    assert evaluate("has_condition('copd')", ctx({"diabetes_type1": ON})) is False
    assert evaluate("!has_condition('copd')", ctx()) is True
    assert evaluate("!has_condition('copd')", ctx({"copd": ON})) is False


@pytest.mark.parametrize(("conditions", "expected"), [
    ({"diabetes_type2": date(2024, 3, 1)}, T),  # exactly 365 days before
    ({"diabetes_type2": date(2024, 2, 29)}, F),  # 366 days before
    ({"diabetes_type2": ON}, T),  # diagnosed on the day
    ({"diabetes_type2": date(2025, 3, 2)}, F),  # an onset after the contact
    ({"diabetes_type2": None}, U),  # present, onset not known
    ({"diabetes_type1": date(2025, 1, 1)}, F),  # absent
    ({"diabetes_type2": datetime(2024, 12, 31, 23, 0)}, T),  # a datetime is read as its date
])
def test_diagnosed_within_days(conditions: dict[str, date | None], expected: bool | None) -> None:
    assert evaluate("diagnosed_within_days('diabetes_type2', 365)", ctx(conditions)) is expected


def test_diagnosed_within_zero_days_and_datetime_contact() -> None:
    assert evaluate("diagnosed_within_days('copd', 0)", ctx({"copd": ON})) is True
    assert evaluate("diagnosed_within_days('copd', 0)", ctx({"copd": date(2025, 2, 28)})) is False
    on = datetime(2025, 3, 1, 9, 30)
    assert evaluate("diagnosed_within_days('copd', 1)",
                    ctx({"copd": date(2025, 2, 28)}, on=on)) is True


def test_condition_count_counts_ltc_groups_only() -> None:
    rule = "condition_count() >= 2"
    assert evaluate(rule, ctx({"copd": None, "diabetes_type2": ON})) is True
    assert evaluate(rule, ctx({"copd": None, "housebound": None})) is False
    assert evaluate(rule, ctx({"copd": None, "some_unmapped_group": None})) is False
    assert evaluate(rule, ctx()) is False
    assert evaluate("condition_count() == 0", ctx()) is True
    assert evaluate("2 <= condition_count()", ctx({"copd": None, "diabetes_type1": ON})) is True
    assert evaluate("condition_count() < age", ctx({"copd": None}, age=2)) is True
    assert evaluate("condition_count() < age", ctx({"copd": None})) is None


def test_the_contract_examples() -> None:
    examples = {
        "smoking_status == 'current' && age >= 16": (ctx(smoking_status="current", age=16), T),
        "bmi >= 30.0 || (ethnicity_group in ['south_asian','chinese','other_asian',"
        "'middle_eastern','black_african','black_caribbean'] && bmi >= 27.5)":
            (ctx(bmi=28.0, ethnicity_group="chinese"), T),
        "has_condition('diabetes_type2') && diagnosed_within_days('diabetes_type2', 365)":
            (ctx({"diabetes_type2": date(2024, 6, 1)}), T),
        "condition_count() >= 2": (ctx({"copd": None, "diabetes_type1": None}), T),
        "!known('audit') && audit_c >= 5": (ctx(audit_c=5), T),
    }
    for source, (context, expected) in examples.items():
        assert check_expression(source, CATALOGUE) == []
        assert evaluate(source, context) is expected
    weight = next(iter(k for k in examples if k.startswith("bmi")))
    assert evaluate(weight, ctx(bmi=28.0)) is None  # ethnicity unknown: no match
    assert evaluate(weight, ctx(bmi=28.0, ethnicity_group="white")) is False
    assert evaluate(weight, ctx(bmi=31.0)) is True


# --- what a compiled expression reports --------------------------------------------------------

def test_facts_and_groups_read() -> None:
    expression = compiled("!known('audit') && audit_c >= 5 || has_condition('copd') "
                          "|| diagnosed_within_days('diabetes_type1', 30) || is_carer")
    assert expression.facts == {"audit", "audit_c", "is_carer"}
    assert expression.groups == {"copd", "diabetes_type1"}
    assert expression.source.startswith("!known")
    assert compiled("condition_count() > 1").facts == frozenset()


@pytest.mark.parametrize(("source", "required"), [
    ("age >= 18", {"age"}),
    ("age >= 18 && smoking_status == 'current'", {"age", "smoking_status"}),
    ("age >= 18 && (bmi >= 30 || bmi >= 27.5 && ethnicity_group in ['chinese'])",
     {"age", "bmi"}),
    ("audit >= 8 || audit_c >= 5", set()),
    ("!known('audit') && audit_c >= 5", {"audit_c"}),
    ("known('audit')", {"audit"}),
    ("!(bmi < 30)", {"bmi"}),  # !unknown is unknown, so bmi is still needed
    ("!(bmi < 30 && age > 1)", set()),
    ("!(bmi < 30 || age > 1)", {"bmi", "age"}),
    ("is_carer", {"is_carer"}),
    ("!lives_alone", {"lives_alone"}),
    ("has_condition('copd') && diagnosed_within_days('copd', 365)", set()),
    ("condition_count() >= 2 && age >= 65", {"age"}),
    ("false || age > 1", {"age"}),
    ("age > 1 || true", set()),
    ("(age > 3) == is_carer", {"age", "is_carer"}),
    ("age in [1, 2] && age < audit", {"age", "audit"}),
])
def test_required_facts(source: str, required: set[str]) -> None:
    assert compiled(source).required_facts == required


def test_explain_lists_every_leaf_in_source_order() -> None:
    source = ("age >= 18 &&\n  (bmi >= 30.0 || (known('ethnicity_group') &&\n"
              "  ethnicity_group in ['chinese'] && bmi >= 27.5)) && !is_carer")
    explained = compiled(source).explain(ctx(age=40, bmi=28.0))
    assert [(e.text, e.line, e.column, e.value) for e in explained] == [
        ("age >= 18", 1, 1, True),
        ("bmi >= 30.0", 2, 4, False),
        ("known('ethnicity_group')", 2, 20, False),
        ("ethnicity_group in ['chinese']", 3, 3, None),
        ("bmi >= 27.5", 3, 37, True),
        ("is_carer", 3, 55, None),
    ]
    assert explained[3].to_dict() == {"condition": "ethnicity_group in ['chinese']",
                                      "line": 3, "column": 3, "value": "unknown"}
    assert explained[0].to_dict()["value"] is True


def test_explain_of_functions_and_literals() -> None:
    expression = compiled("condition_count() >= 1 || has_condition('copd') || true")
    explained = expression.explain(ctx({"copd": None}))
    assert explained == [Explanation("condition_count() >= 1", 1, 1, True),
                         Explanation("has_condition('copd')", 1, 27, True)]
    assert compiled("true").explain(ctx()) == []


# --- diagnostics -------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "line", "column", "message", "hint"), [
    # unknown names, with a did-you-mean
    ("agee >= 18", 1, 1, "unknown fact 'agee'", "did you mean age?"),
    ("age >= 18 &&\n  smokng_status == 'ex'", 2, 3, "unknown fact 'smokng_status'",
     "did you mean smoking_status?"),
    ("nothing_like_it > 1", 1, 1, "unknown fact 'nothing_like_it'", None),
    ("conditon_count() > 1", 1, 1, "unknown function 'conditon_count'",
     "did you mean condition_count?"),
    ("foo()", 1, 1, "unknown function 'foo'", "the functions are known('fact')"),
    ("age() > 1", 1, 1, "age is a fact, not a function", "write age without brackets"),
    ("condition_count > 1", 1, 1, "condition_count is a function", "condition_count()"),
    ("copd", 1, 1, "copd is a condition group", "has_condition('copd')"),
    ("age == null", 1, 8, "null is not part of the rule language", "known('fact')"),
    ("True", 1, 1, "unknown name 'True'", "lower case"),
    # arity and arguments
    ("known('audit', 'bmi')", 1, 1, "known() takes 1 argument, got 2", "known('fact')"),
    ("condition_count(1) > 1", 1, 1, "condition_count() takes 0 arguments, got 1", None),
    ("diagnosed_within_days('copd')", 1, 1, "takes 2 arguments, got 1", None),
    ("known(audit)", 1, 7, "known() takes a fact name in quotes", "known('audit')"),
    ("known('aduit')", 1, 7, "unknown fact 'aduit'", "did you mean 'audit'?"),
    ("has_condition('diabetes')", 1, 15, "unknown condition group 'diabetes'",
     "did you mean 'diabetes_type1' or 'diabetes_type2'?"),
    ("has_condition(1)", 1, 15, "takes a condition group name in quotes", None),
    ("diagnosed_within_days('copdd', 30)", 1, 23, "unknown condition group 'copdd'",
     "did you mean 'copd'?"),
    ("diagnosed_within_days('copd', -1)", 1, 31, "must be 0 or more", None),
    ("diagnosed_within_days('copd', 1.5)", 1, 31, "must be a whole number", None),
    ("diagnosed_within_days('copd', age)", 1, 31, "must be a whole number", None),
    # operand types
    ("bmi == 'high'", 1, 8, "cannot compare bmi (a number) with 'high' (text)", None),
    ("smoking_status > 3", 1, 1, "'>' compares numbers, but smoking_status is text", None),
    ("is_carer < 2", 1, 1, "'<' compares numbers, but is_carer is true or false", None),
    ("is_carer == 1", 1, 13, "cannot compare is_carer (true or false) with 1",
     "write is_carer or !is_carer"),
    ("1 == lives_alone", 1, 6, "cannot compare 1 (a number) with lives_alone (true or false)",
     "write lives_alone or !lives_alone"),
    ("smoking_status == 'curent'", 1, 19, "'curent' is not a value of smoking_status; "
     "allowed: 'current', 'ex', 'never', 'unknown'", "did you mean 'current'?"),
    ("'Never' != smoking_status", 1, 1, "'Never' is not a value of smoking_status",
     "did you mean 'never'?"),
    ("smoking_status in ['ex', 'nevr']", 1, 26, "'nevr' is not a value", "'never'"),
    ("!bmi > 30", 1, 2, "the operand of '!' must be true or false, but bmi is a number",
     "to negate a comparison write !(a > b)"),
    ("age >= 18 && bmi", 1, 14, "each side of '&&' must be true or false", "bmi >= 10"),
    ("bmi || is_carer", 1, 1, "each side of '||' must be true or false", None),
    # the whole condition
    ("bmi", 1, 1, "the condition must be true or false, but bmi is a number",
     "compare it with a number"),
    ("smoking_status", 1, 1, "the condition must be true or false",
     "smoking_status == 'current'"),
    ("ethnicity_group", 1, 1, "the condition must be true or false", "ethnicity_group == "),
    ("condition_count()", 1, 1, "the condition must be true or false", None),
    ("'yes'", 1, 1, "the condition must be true or false, but 'yes' is text", None),
    # chained comparisons
    ("18 <= age <= 65", 1, 11, "chained comparison; write a <= b && b <= c",
     "write 18 <= age && age <= 65"),
    ("age < bmi < audit < 3", 1, 11, "chained comparison", "write age < bmi && bmi < audit"),
    ("age in [1] == true", 1, 12, "chained comparison", None),
    # in and lists
    ("age in 5", 1, 8, "'in' needs a list on the right, but 5 is a number", None),
    ("age in [1, 'a']", 1, 12, "a list holds values of one type, but 'a' is text", None),
    ("bmi in ['a']", 1, 1, "cannot look for bmi (a number) in a list of text values", None),
    ("age in [audit]", 1, 9, "list items must be values written in the rule", None),
    ("[1] == age", 1, 1, "a list can only be used after 'in'", None),
    # literals
    ("age < 99999999999999999999", 1, 7, "whole number out of range", None),
    ("age < -9223372036854775809", 1, 7, "whole number out of range", None),
    ("bmi < 1e999", 1, 7, "number out of range", None),
    ("ethnicity_group == 'a\\qb'", 1, 22, "unsupported escape '\\q'", None),
    ("-age < 1", 1, 1, "'-' can only be written before a number", "arithmetic"),
    # syntax
    ("age >= ", 1, 8, "syntax error: unexpected end of expression", "expected a fact"),
    ("age = 18", 1, 5, "unexpected character '='", "compare with '=='"),
    ("age >= 18 and bmi > 1", 1, 11, "unexpected name 'and'", "'and' is written '&&'"),
    ("age >= 18 & is_carer", 1, 11, "unexpected character '&'", "'&&'"),
    ("age + 1 > 2", 1, 5, "unexpected character '+'", "arithmetic"),
    ("age - 1 > 2", 1, 5, "unexpected '-'", "arithmetic"),
    ("(age > 1", 1, 9, "unexpected end of expression", "')'"),
    ("age > 1)", 1, 8, "unexpected ')'", "expected the end of the expression"),
    ("smoking_status == 'ex", 1, 19, "unterminated string", None),
    ("a.b > 1", 1, 2, "unexpected '.'", "field access"),
    ("bmi > .5", 1, 7, "unexpected '.'", "0.5"),
    ("is_carer ? 1 : 2", 1, 10, "unexpected character '?'", "conditional"),
    ("age > 1 !is_carer", 1, 9, "unexpected '!'", None),
    ("age >\n\n  ", 3, 3, "unexpected end of expression", None),
    ("", 1, 1, "expression is empty", None),
    ("  \n ", 1, 1, "expression is empty", None),
])
def test_diagnostics(source: str, line: int, column: int, message: str,
                     hint: str | None) -> None:
    diagnostic = only_diagnostic(source)
    assert (diagnostic.line, diagnostic.column) == (line, column), diagnostic
    assert message in diagnostic.message
    if hint is not None:
        assert diagnostic.hint is not None and hint in diagnostic.hint, diagnostic


def test_several_problems_are_all_reported_in_source_order() -> None:
    diagnostics = check_expression("zz > 1 &&\n  bmi == 'x' ||\n  known('yy')", CATALOGUE)
    assert [(d.line, d.column) for d in diagnostics] == [(1, 1), (2, 10), (3, 9)]


def test_compile_error_carries_the_diagnostics() -> None:
    with pytest.raises(RuleCompileError) as caught:
        compiled("agee >= 18 &&\n  bmi == 'x'")
    error = caught.value
    assert isinstance(error, ValueError)
    assert [d.message for d in error.diagnostics] == [
        "unknown fact 'agee'", "cannot compare bmi (a number) with 'x' (text)"]
    assert str(error) == ("1:1: unknown fact 'agee'\n"
                          "2:10: cannot compare bmi (a number) with 'x' (text)")


def test_diagnostic_to_dict() -> None:
    assert Diagnostic(1, 2, "m").to_dict() == {"line": 1, "column": 2, "message": "m"}
    assert Diagnostic(1, 2, "m", "h").to_dict() == {"line": 1, "column": 2, "message": "m",
                                                    "hint": "h"}


def test_not_text_is_a_diagnostic_not_an_exception() -> None:
    assert check_expression(None, CATALOGUE)[0].message == "the expression must be text"  # type: ignore[arg-type]


# --- limits ------------------------------------------------------------------------------------

def test_length_limit() -> None:
    at_limit = "age > 1" + " " * (MAX_LENGTH - 7)
    assert check_expression(at_limit, CATALOGUE) == []
    diagnostic = only_diagnostic(at_limit + " ")
    assert "too long" in diagnostic.message
    assert (diagnostic.line, diagnostic.column) == (1, MAX_LENGTH + 1)


def test_node_limit() -> None:
    def wide(n: int) -> str:  # n comparisons: 3 nodes each, plus the && between them
        return " && ".join(f"age > {i}" for i in range(n))
    assert check_expression(wide(120), CATALOGUE) == []
    diagnostic = only_diagnostic(wide(MAX_NODES // 3 + 1))
    assert "too large" in diagnostic.message


def test_depth_limit() -> None:
    assert check_expression("(" * 40 + "is_carer" + ")" * 40, CATALOGUE) == []
    diagnostic = only_diagnostic("(" * (MAX_DEPTH + 5) + "is_carer" + ")" * (MAX_DEPTH + 5))
    assert "nested too deeply" in diagnostic.message


@pytest.mark.parametrize("source", [
    "(" * 100_000,
    "(" * 3999,
    "(" * 3998 + "+",
    "(" * 1999 + ")",
    "[" * 1999 + "age > ",
    "(" * 1999 + "is_carer" + ")" * 1999,
    "!" * 3990 + "is_carer",
    "[" * 1999 + "]" * 1999,
    "age < " * 660 + "1",
    "-" * 3990 + "1",
    " && ".join(["is_carer"] * 360),
])
def test_hostile_input_gives_a_quick_diagnostic(source: str) -> None:
    started = time.perf_counter()
    diagnostics = check_expression(source, CATALOGUE)
    assert diagnostics and all(isinstance(d, Diagnostic) for d in diagnostics)
    assert time.perf_counter() - started < 2.0


def test_compiled_expression_is_reusable_and_has_a_repr() -> None:
    expression = compiled("age >= 18")
    assert repr(expression) == "CompiledExpression('age >= 18')"
    assert [expression.evaluate(ctx(age=a)) for a in (17, 18, 19)] == [False, True, True]
    with pytest.raises(AttributeError):
        expression.other = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        expression.source = "age < 18"  # type: ignore[misc]


def test_messages_quote_the_whole_operand() -> None:
    diagnostic = only_diagnostic("(is_carer && lives_alone) == 1")
    assert diagnostic.message == ("cannot compare (is_carer && lives_alone) (true or false) "
                                  "with 1 (a number)")
    assert diagnostic.hint is None  # no single true/false fact to suggest
    assert only_diagnostic("(age > 1) == bmi").hint is None
    long = only_diagnostic("(age > 1 && age > 2 && age > 3 && age > 4 && age > 5) < 3")
    assert "but age > 1 && age > 2 && age > 3 && age > … is true or false" in long.message
