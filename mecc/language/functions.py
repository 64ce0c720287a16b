"""Rule expressions: the functions a rule may call, their signatures and their checks.

Pure domain code. `check.Checker` hands every call here; each function's checker validates its
arguments against the catalogue (a fact or condition-group name in quotes, a whole number of
days) and builds the evaluator closure from `evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from lark import Token, Tree

from mecc.language import evaluate as ev
from mecc.language.nodes import Node
from mecc.language.syntax import did_you_mean, first_token, subtrees

if TYPE_CHECKING:
    # The checker calls in here and is passed back in: a type only, never imported at run time.
    from mecc.language.check import Checker

FUNCTIONS = {"known": 1, "has_condition": 1, "diagnosed_within_days": 2, "condition_count": 0,
             "on_medicine": 1}
SIGNATURES = {
    "known": "known('fact')",
    "has_condition": "has_condition('group')",
    "diagnosed_within_days": "diagnosed_within_days('group', days)",
    "condition_count": "condition_count()",
    "on_medicine": "on_medicine('class')",
}
# Literals a function argument may be written as (anything else is computed, so not allowed).
LITERALS = frozenset({"int_", "double", "string", "true", "false", "neg"})


def check_call(checker: Checker, tree: Tree[Token]) -> Node:
    """A function call: a known function, with the right number of arguments, each checked."""
    name_token = first_token(tree)
    args = subtrees(tree)  # the name is a token, every argument a sub-expression
    name = name_token.value
    if name not in FUNCTIONS:
        if name in checker.catalogue.facts:
            return checker.error(name_token, f"{name} is a fact, not a function",
                                 f"write {name} without brackets")
        hint = did_you_mean(name, FUNCTIONS) or (
            "the functions are " + ", ".join(SIGNATURES.values()))
        return checker.error(name_token, f"unknown function '{name}'", hint)
    arity = FUNCTIONS[name]
    if len(args) != arity:
        plural = "argument" if arity == 1 else "arguments"
        return checker.error(name_token,
                             f"{name}() takes {arity} {plural}, got {len(args)}",
                             f"write {SIGNATURES[name]}")
    return _CHECKERS[name](checker, tree, args)


def _quoted_name(checker: Checker, function: str, tree: Tree[Token], what: str,
                 names: Iterable[str]) -> str | None:
    """The string-literal argument of known() / has_condition(), checked against names."""
    names = list(names)
    if tree.data != "string":
        hint = f"write {SIGNATURES[function]}"
        if tree.data == "ident":
            hint = f"write {function}('{first_token(tree).value}')"
        checker.error(tree, f"{function}() takes a {what} name in quotes", hint)
        return None
    value = checker.string(first_token(tree))
    if value is None:
        return None
    if value not in names:
        checker.error(tree, f"unknown {what} '{value}'", did_you_mean(value, names, quote=True))
        return None
    return value


def _known(checker: Checker, tree: Tree[Token], args: list[Tree[Token]]) -> Node:
    fact = _quoted_name(checker, "known", args[0], "fact", checker.catalogue.facts)
    if fact is None:
        return Node("error", tree)
    checker.facts.add(fact)
    return Node("bool", tree, ev.fact_known(fact), true_needs=frozenset({fact}),
                negated=ev.fact_unknown(fact))


def _has_condition(checker: Checker, tree: Tree[Token], args: list[Tree[Token]]) -> Node:
    group = _quoted_name(checker, "has_condition", args[0], "condition group",
                         checker.catalogue.groups)
    if group is None:
        return Node("error", tree)
    checker.groups.add(group)
    return Node("bool", tree, ev.has_condition(group), negated=ev.lacks_condition(group))


def _diagnosed_within_days(checker: Checker, tree: Tree[Token],
                           args: list[Tree[Token]]) -> Node:
    group = _quoted_name(checker, "diagnosed_within_days", args[0], "condition group",
                         checker.catalogue.groups)
    days_tree = args[1]
    days = checker.literal(days_tree) if days_tree.data in LITERALS else None
    if days is None or days.type not in ("int", "error"):
        return checker.error(days_tree, "the number of days must be a whole number written "
                             "in the rule", "e.g. diagnosed_within_days('copd', 365)")
    if days.type == "error" or group is None:
        return Node("error", tree)
    if days.const < 0:
        return checker.error(days_tree, "the number of days must be 0 or more")
    checker.groups.add(group)
    return Node("bool", tree, ev.diagnosed_within_days(group, days.const))


def _condition_count(checker: Checker, tree: Tree[Token], args: list[Tree[Token]]) -> Node:
    return Node("int", tree, ev.condition_count(checker.catalogue.ltc_groups),
                counts_conditions=True)


def _on_medicine(checker: Checker, tree: Tree[Token], args: list[Tree[Token]]) -> Node:
    medicine = _quoted_name(checker, "on_medicine", args[0], "medicine class",
                            checker.catalogue.medicines)
    if medicine is None:
        return Node("error", tree)
    return Node("bool", tree, ev.on_medicine(medicine), negated=ev.not_on_medicine(medicine))


_CHECKERS: dict[str, Callable[[Checker, Tree[Token], list[Tree[Token]]], Node]] = {
    "known": _known,
    "has_condition": _has_condition,
    "diagnosed_within_days": _diagnosed_within_days,
    "condition_count": _condition_count,
    "on_medicine": _on_medicine,
}
