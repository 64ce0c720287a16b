"""Rule expressions, step 3: the closures a compiled expression is made of.

Pure domain code. Every evaluator has the signature `(ctx) -> value`; for conditions the value
is True / False / None, None meaning *unknown* (CEL's error value). The common shapes
(`fact >= 30`, `fact in [...]`, `x >= lo && x <= hi`, `fact >= 18 && ...`, `!has_condition(g)`)
get closures of their own, because each closure call saved is time saved per rule per event,
and evaluation time per rule is a product promise (QUALITY.md, Performance: Rules).

No evaluator raises for values of the catalogue's types. A value of another type (which intake
should never let through) makes the comparison unknown rather than raising.
"""

from __future__ import annotations

import operator
import textwrap
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from mecc.clinical.domain import EvalContext

Evaluator = Callable[[EvalContext], Any]
FactTest = tuple[str, str, Any]  # (fact, comparison operator, constant): `fact op constant`

COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
# `k < fact` is `fact > k`: used to put the fact on the left before specialising.
MIRRORED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _specialise(title: str, source: str, **literals: str) -> Callable[..., Evaluator]:
    """The function `make` that `source` defines, with each `{name}` in it replaced by a literal.

    For closures that differ only in an operator or a truth value: one text serves every variant,
    yet each variant is compiled with its operator or constant inline, so it costs no extra call
    or variable lookup per evaluation (the technique dataclasses uses for `__init__`).
    """
    namespace: dict[str, Any] = {"__name__": __name__, "COMPARATORS": COMPARATORS}
    code = compile(textwrap.dedent(source).format(**literals), f"<{__name__}: {title}>", "exec")
    exec(code, namespace)  # noqa: S102 - our own constant text, never input
    return namespace["make"]  # type: ignore[no-any-return]


def constant(value: Any) -> Evaluator:
    def ev(ctx: EvalContext) -> Any:
        return value
    return ev


def fact_value(name: str) -> Evaluator:
    def ev(ctx: EvalContext) -> Any:
        return ctx.facts.get(name)
    return ev


def fact_condition(name: str) -> Evaluator:
    """A bool fact used bare as a condition: its value, or unknown."""
    def ev(ctx: EvalContext) -> bool | None:
        value = ctx.facts.get(name)
        return value if value is True or value is False else None
    return ev


def fact_condition_negated(name: str) -> Evaluator:
    """`!fact` for a bool fact, in one step."""
    def ev(ctx: EvalContext) -> bool | None:
        value = ctx.facts.get(name)
        if value is True:
            return False
        return True if value is False else None
    return ev


def fact_unknown(name: str) -> Evaluator:
    """`!known('fact')`."""
    def ev(ctx: EvalContext) -> bool:
        return ctx.facts.get(name) is None
    return ev


def fact_known(name: str) -> Evaluator:
    def ev(ctx: EvalContext) -> bool:
        return ctx.facts.get(name) is not None
    return ev


# --- comparisons -----------------------------------------------------------------------------
# One closure per operator so that `fact OP constant` costs one dict lookup and one comparison.

_FACT_VS_CONSTANT_SOURCE = """
    def make(name, k):
        def ev(ctx):
            value = ctx.facts.get(name)
            if value is None:
                return None
            try:
                return value {op} k
            except TypeError:
                return None
        return ev
"""
_FACT_VS_CONSTANT = {op: _specialise(f"fact {op} constant", _FACT_VS_CONSTANT_SOURCE, op=op)
                     for op in COMPARATORS}


def fact_compare(name: str, op: str, k: Any) -> Evaluator:
    """`fact OP constant`."""
    return _FACT_VS_CONSTANT[op](name, k)


def compare(op: str, left: Evaluator, right: Evaluator) -> Evaluator:
    """Any other comparison: unknown when either side is unknown."""
    fn = COMPARATORS[op]

    def ev(ctx: EvalContext) -> bool | None:
        a = left(ctx)
        if a is None:
            return None
        b = right(ctx)
        if b is None:
            return None
        try:
            return fn(a, b)
        except TypeError:
            return None
    return ev


def fact_in(name: str, members: frozenset[Any]) -> Evaluator:
    def ev(ctx: EvalContext) -> bool | None:
        value = ctx.facts.get(name)
        if value is None:
            return None
        try:
            return value in members
        except TypeError:  # an unhashable value
            return None
    return ev


def fact_between(name: str, low: Any, low_inclusive: bool, high: Any,
                 high_inclusive: bool) -> Evaluator:
    """`fact >= low && fact <= high` (or with < / >) in one step: a common shape in rules."""
    if low_inclusive and high_inclusive:
        def ev(ctx: EvalContext) -> bool | None:
            value = ctx.facts.get(name)
            if value is None:
                return None
            try:
                within: bool = low <= value <= high  # a name, not a call: this is the hot loop
            except TypeError:
                return None
            return within
        return ev
    above = operator.ge if low_inclusive else operator.gt
    below = operator.le if high_inclusive else operator.lt

    def ev_general(ctx: EvalContext) -> bool | None:
        value = ctx.facts.get(name)
        if value is None:
            return None
        try:
            within: bool = above(value, low) and below(value, high)
        except TypeError:
            return None
        return within
    return ev_general


def value_in(operand: Evaluator, members: frozenset[Any]) -> Evaluator:
    def ev(ctx: EvalContext) -> bool | None:
        value = operand(ctx)
        if value is None:
            return None
        try:
            return value in members
        except TypeError:
            return None
    return ev


# --- Kleene logic ----------------------------------------------------------------------------
# CEL's && and || are commutative over errors: `unknown && false` is false and `unknown || true`
# is true, so the right side is still evaluated when the left one is unknown.

def negate(operand: Evaluator) -> Evaluator:
    def ev(ctx: EvalContext) -> bool | None:
        value = operand(ctx)
        return None if value is None else not value
    return ev


# && and || are one algorithm with the truth values swapped: `settled` is the value that decides
# the whole (False for &&, True for ||) and `otherwise` the one the whole has when no operand is
# settled or unknown.

_WITH_TEST_SOURCE = """
    def make(test, right):
        name, op, k = test
        fn = COMPARATORS[op]

        def ev(ctx):
            value = ctx.facts.get(name)
            if value is not None:
                try:
                    passed = fn(value, k)
                except TypeError:
                    pass
                else:
                    return {if_passed} if passed else {if_failed}
            return {settled} if right(ctx) is {settled} else None
        return ev
"""
_and_with_test = _specialise("fact op constant && right", _WITH_TEST_SOURCE,
                             if_passed="right(ctx)", if_failed="False", settled="False")
_or_with_test = _specialise("fact op constant || right", _WITH_TEST_SOURCE,
                            if_passed="True", if_failed="right(ctx)", settled="True")


def and_with_test(test: FactTest, right: Evaluator) -> Evaluator:
    """`fact op constant && right` with the comparison done in place."""
    return _and_with_test(test, right)


def or_with_test(test: FactTest, right: Evaluator) -> Evaluator:
    """`fact op constant || right` with the comparison done in place."""
    return _or_with_test(test, right)


_JUNCTION_SOURCE = """
    def make(operands):
        if len(operands) == 1:
            return operands[0]
        if len(operands) == 3:
            first, second, third = operands

            def ev3(ctx):
                a = first(ctx)
                if a is {settled}:
                    return {settled}
                b = second(ctx)
                if b is {settled}:
                    return {settled}
                c = third(ctx)
                if c is {settled}:
                    return {settled}
                return None if a is None or b is None or c is None else {otherwise}
            return ev3
        if len(operands) == 2:
            left, right = operands

            def ev2(ctx):
                a = left(ctx)
                if a is {settled}:
                    return {settled}
                b = right(ctx)
                if a is {otherwise} or b is {settled}:
                    return b
                return None
            return ev2
        parts = tuple(operands)

        def ev(ctx):
            result = {otherwise}
            for part in parts:
                value = part(ctx)
                if value is {settled}:
                    return {settled}
                if value is None:
                    result = None
            return result
        return ev
"""
_all_of = _specialise("&&", _JUNCTION_SOURCE, settled="False", otherwise="True")
_any_of = _specialise("||", _JUNCTION_SOURCE, settled="True", otherwise="False")


def all_of(operands: Sequence[Evaluator]) -> Evaluator:
    return _all_of(operands)


def any_of(operands: Sequence[Evaluator]) -> Evaluator:
    return _any_of(operands)


# --- functions -------------------------------------------------------------------------------

def has_condition(group: str) -> Evaluator:
    # The condition list is the record: a group that is not there is absent, not unknown.
    def ev(ctx: EvalContext) -> bool:
        return group in ctx.conditions
    return ev


def on_medicine(medicine_class: str) -> Evaluator:
    # Like the condition list, the medication list is the record: a class not there is absent.
    def ev(ctx: EvalContext) -> bool:
        return medicine_class in ctx.medicines
    return ev


def not_on_medicine(medicine_class: str) -> Evaluator:
    """`!on_medicine('class')`."""
    def ev(ctx: EvalContext) -> bool:
        return medicine_class not in ctx.medicines
    return ev


def lacks_condition(group: str) -> Evaluator:
    """`!has_condition('group')`."""
    def ev(ctx: EvalContext) -> bool:
        return group not in ctx.conditions
    return ev


def _as_date(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


def _days_between(earlier: date, later: date) -> int | None:
    try:
        return (_as_date(later) - _as_date(earlier)).days
    except (TypeError, AttributeError):
        return None


def diagnosed_within_days(group: str, days: int) -> Evaluator:
    def ev(ctx: EvalContext) -> bool | None:
        conditions = ctx.conditions
        if group not in conditions:
            return False
        onset = conditions[group]
        if onset is None:
            return None
        try:
            elapsed: int | None = (ctx.on - onset).days
        except TypeError:  # a datetime against a date: compare calendar days
            elapsed = _days_between(onset, ctx.on)
        return None if elapsed is None else 0 <= elapsed <= days
    return ev


def condition_count(ltc_groups: frozenset[str]) -> Evaluator:
    def ev(ctx: EvalContext) -> int:
        return len(ltc_groups.intersection(ctx.conditions))
    return ev


def condition_count_compare(ltc_groups: frozenset[str], op: str, k: Any) -> Evaluator:
    """`condition_count() OP constant`."""
    fn = COMPARATORS[op]

    def ev(ctx: EvalContext) -> bool:
        return fn(len(ltc_groups.intersection(ctx.conditions)), k)
    return ev
