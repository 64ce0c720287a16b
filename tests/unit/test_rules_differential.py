"""Differential test: our rule language against an independent CEL implementation.

The `common-expression-language` package (`import cel`, a binding of a Rust CEL interpreter) is
a test-only dependency. Both sides get the same generated expressions, over the operator subset
they share (comparisons, && || !, `in` on list literals, literals, bare bool facts), and the
same facts, each present or absent. An absent fact is an undeclared variable to cel: an error,
which CEL's logic absorbs exactly as ours absorbs *unknown* (`a > 1 || true` is true). cel
reports an error that reaches the top as RuntimeError; that maps to our None.

Known corner where the cel package departs from the CEL specification (excluded from the
generator, pinned in its own test below): it compares an int with a double by converting the
int to a double, so above 2**53 distinct numbers compare equal. The spec compares numeric
values exactly across types, as we do. The generated numbers stay far below 2**53.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mecc.clinical.catalogue import build_catalogue, parse_facts
from mecc.clinical.domain import EvalContext
from mecc.rules import compile_expression

cel = pytest.importorskip("cel", reason="common-expression-language is a test dependency")

CATALOGUE = build_catalogue(parse_facts(Path("test-facts.yaml"), {"facts": {
    "a": {"type": "int"}, "n": {"type": "int"}, "b": {"type": "double"},
    "s": {"type": "string"}, "t": {"type": "string"},
    "f": {"type": "bool"}, "g": {"type": "bool"},
}}), [])
WORDS = ["x", "y", "zz"]
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cel_value(source: str, facts: dict[str, Any]) -> bool | None:
    try:
        result = cel.evaluate(source, dict(facts))
    except RuntimeError:  # an error value reached the top: unknown
        return None
    assert isinstance(result, bool), (source, result)
    return result


def ours(source: str, facts: dict[str, Any]) -> bool | None:
    return compile_expression(source, CATALOGUE).evaluate(EvalContext(facts, {}, date.today()))


# --- generated expressions ---------------------------------------------------------------------

@dataclass(frozen=True)
class Expr:
    source: str
    simple: bool  # safe to use without parentheses as an operand of ! and ==


def _number(value: int | float) -> str:
    return repr(value)


ints = st.integers(-3, 12).map(_number)
doubles = st.integers(-6, 24).map(lambda k: _number(k / 2))
number_operands = st.one_of(st.sampled_from(["a", "n", "b"]), ints, doubles)
string_operands = st.one_of(st.sampled_from(["s", "t"]),
                            st.builds(lambda w, q: f"{q}{w}{q}", st.sampled_from(WORDS),
                                      st.sampled_from(["'", '"'])))
bool_operands = st.sampled_from(["f", "g", "true", "false"])


def _comparison(left: str, op: str, right: str) -> Expr:
    return Expr(f"{left} {op} {right}", False)


leaves = st.one_of(
    st.builds(_comparison, number_operands, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
              number_operands),
    st.builds(_comparison, string_operands, st.sampled_from(["==", "!="]), string_operands),
    st.builds(_comparison, bool_operands, st.sampled_from(["==", "!="]), bool_operands),
    st.builds(lambda x, items: Expr(f"{x} in [{', '.join(items)}]", False),
              st.sampled_from(["a", "n", "b"]), st.lists(st.one_of(ints, doubles), max_size=4)),
    st.builds(lambda x, items: Expr(f"{x} in [{', '.join(items)}]", False),
              st.sampled_from(["s", "t"]),
              st.lists(st.sampled_from(WORDS).map(lambda w: f"'{w}'"), max_size=3)),
    st.builds(lambda x, items: Expr(f"{x} in [{', '.join(items)}]", False),
              st.sampled_from(["f", "g"]), st.lists(st.sampled_from(["true", "false"]),
                                                    max_size=2)),
    bool_operands.map(lambda x: Expr(x, True)),
)


def _join(op: str) -> Any:
    # Operands of && and || are parenthesised at random: without parentheses the two sides
    # must also agree on precedence.
    def join(parts: list[tuple[Expr, bool]]) -> Expr:
        return Expr(f" {op} ".join(e.source if not wrap else f"({e.source})"
                                   for e, wrap in parts), False)
    return join


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    parts = st.lists(st.tuples(children, st.booleans()), min_size=2, max_size=4)
    return st.one_of(
        children.map(lambda e: Expr(f"!{e.source}" if e.simple else f"!({e.source})", True)),
        parts.map(_join("&&")),
        parts.map(_join("||")),
        st.builds(lambda x, op, y: Expr(f"({x.source}) {op} ({y.source})", False),
                  children, st.sampled_from(["==", "!="]), children),
    )


expressions = st.recursive(leaves, _extend, max_leaves=10)
facts = st.fixed_dictionaries({}, optional={
    "a": st.integers(-3, 12), "n": st.integers(-3, 12),
    "b": st.integers(-6, 24).map(lambda k: k / 2),
    "s": st.sampled_from(WORDS), "t": st.sampled_from(WORDS),
    "f": st.booleans(), "g": st.booleans(),
})


@FAST
@given(expressions, st.lists(facts, min_size=1, max_size=5))
def test_same_answers_as_cel(expression: Expr, samples: list[dict[str, Any]]) -> None:
    for sample in samples:
        assert ours(expression.source, sample) is cel_value(expression.source, sample), (
            expression.source, sample)


@pytest.mark.parametrize(("source", "sample", "expected"), [
    ("a > 1 || true", {}, True),
    ("a > 1 || false", {}, None),
    ("a > 1 && false", {}, False),
    ("a > 1 && true", {}, None),
    ("!(a > 1)", {}, None),
    ("1 == 1.0", {}, True),
    ("a < 2.5", {"a": 2}, True),
    ("b in [1, 2]", {"b": 2.0}, True),
    ("a in []", {"a": 1}, False),
    ("a in []", {}, None),
    ("!f == g", {"f": True, "g": False}, True),
    ("true || false && false", {}, True),
    ("(f == true) == (a < 1)", {"f": True}, None),
    ("-0.0 == 0", {}, True),
])
def test_agreed_corners(source: str, sample: dict[str, Any], expected: bool | None) -> None:
    assert cel_value(source, sample) is expected
    assert ours(source, sample) is expected


def test_the_known_departure_of_the_cel_package_from_the_spec() -> None:
    # Excluded from the generator (see the module docstring). Pinned so that a cel release
    # that follows the spec here shows up, and the exclusion can go.
    source = "9007199254740993 == 9007199254740992.0"
    assert cel_value(source, {}) is True  # the package: int converted to double
    assert ours(source, {}) is False  # the spec, and us: exact numeric comparison
