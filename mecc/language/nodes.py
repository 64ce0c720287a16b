"""Rule expressions: checked nodes, and how `&&`, `||` and `!` combine them.

Pure domain code, used by `rules_check`. Besides the evaluator, each boolean node carries the
facts that must be present for it to be true (and to be false); combining those through the
logic operators gives `CompiledExpression.required_facts`, which lets the engine skip a rule
for an event that lacks one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lark import Token, Tree

from mecc.clinical.catalogue import FactSpec
from mecc.language import evaluate as ev

EMPTY: frozenset[str] = frozenset()
NO_VALUE: Any = object()  # Node.const when the node is not a constant
ORDERING = frozenset({"<", "<=", ">", ">="})
Needs = frozenset[str] | None  # None: the node can never take that value
# Requirements as clauses: every clause must have at least one of its facts present.
# `(phq2 >= 3 || gad2 >= 3)` needs {{phq2, gad2}}: no single fact is required, but an event
# with neither cannot make it true. None: the node can never take that value.
Clauses = frozenset[frozenset[str]] | None
MAX_CLAUSES = 32  # distributing || over && can multiply clauses; dropping some only weakens
_UNSET: Any = object()


@dataclass
class Node:
    """A checked sub-expression: its type, evaluator and what the indexer needs to know."""

    type: str  # int | double | string | bool | error
    tree: Tree[Token]
    evaluator: ev.Evaluator = ev.constant(None)
    const: Any = NO_VALUE  # the value, when the node is a literal or folded constant
    fact: str | None = None  # set when the node is a bare fact name
    spec: FactSpec | None = None
    true_needs: Needs = EMPTY  # facts that must all be present for the node to be true
    false_needs: Needs = EMPTY  # ... to be false
    # Shortcuts for the evaluator (each saves a closure call per evaluation):
    negated: ev.Evaluator | None = None  # a one-step evaluator of `!node`
    test: ev.FactTest | None = None  # (fact, op, constant) for `fact op constant`
    counts_conditions: bool = False  # the node is condition_count()
    # What must be present for the node to be true / false, as clauses (see Clauses). Leaves
    # leave these unset and get one clause per needed fact; && || ! combine them.
    true_clauses: Clauses | object = _UNSET
    false_clauses: Clauses | object = _UNSET

    def __post_init__(self) -> None:
        if self.true_clauses is _UNSET:
            self.true_clauses = _as_clauses(self.true_needs)
        if self.false_clauses is _UNSET:
            self.false_clauses = _as_clauses(self.false_needs)

    @property
    def is_number(self) -> bool:
        return self.type in ("int", "double")

    @property
    def known_needs(self) -> frozenset[str]:
        """Facts that must all be present for the node's value to be known (true or false)."""
        if self.true_needs is None:
            return self.false_needs or EMPTY
        if self.false_needs is None:
            return self.true_needs
        return self.true_needs & self.false_needs


@dataclass(frozen=True)
class Leaf:
    """A sub-condition shown by explain(): a comparison, `in`, call or bare bool fact."""

    start: int
    end: int
    line: int
    column: int
    evaluator: ev.Evaluator


def join_all(tree: Tree[Token], nodes: list[Node]) -> Node:
    """`a && b && ...`: true needs what any operand needs to be true; false, what all do."""
    return Node("bool", tree, _join(_merge_ranges(nodes), ev.and_with_test, ev.all_of),
                true_needs=_union([n.true_needs for n in nodes]),
                false_needs=_intersection([n.false_needs for n in nodes]),
                true_clauses=_all_clauses([n.true_clauses for n in nodes]),
                false_clauses=_any_clauses([n.false_clauses for n in nodes]))


def join_any(tree: Tree[Token], nodes: list[Node]) -> Node:
    """`a || b || ...`: true needs what all operands need to be true; false, what any does."""
    parts = [(n.evaluator, n.test) for n in nodes]
    return Node("bool", tree, _join(parts, ev.or_with_test, ev.any_of),
                true_needs=_intersection([n.true_needs for n in nodes]),
                false_needs=_union([n.false_needs for n in nodes]),
                true_clauses=_any_clauses([n.true_clauses for n in nodes]),
                false_clauses=_all_clauses([n.false_clauses for n in nodes]))


def negate(tree: Tree[Token], operand: Node) -> Node:
    """`!a`: true when a is false, so it needs what a needs to be false (and vice versa)."""
    return Node("bool", tree, operand.negated or ev.negate(operand.evaluator),
                true_needs=operand.false_needs, false_needs=operand.true_needs,
                true_clauses=operand.false_clauses, false_clauses=operand.true_clauses,
                negated=operand.evaluator)


_Part = tuple[ev.Evaluator, "ev.FactTest | None"]


def _merge_ranges(nodes: list[Node]) -> list[_Part]:
    """The operands of `&&`, with `x >= lo && x <= hi` pairs made one range test.

    Kleene `&&` is commutative and evaluation has no side effects, so the pair can be tested
    where its first half stood.
    """
    lows: dict[str, int] = {}
    highs: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.test is not None and node.test[1] in ORDERING:
            fact, op, _ = node.test
            (lows if op in (">", ">=") else highs).setdefault(fact, i)
    parts: list[_Part | None] = [(n.evaluator, n.test) for n in nodes]
    for fact, i in lows.items():
        j = highs.get(fact)
        if j is None:
            continue
        low, high = nodes[i].test, nodes[j].test
        assert low is not None and high is not None
        parts[min(i, j)] = (ev.fact_between(fact, low[2], low[1] == ">=",
                                            high[2], high[1] == "<="), None)
        parts[max(i, j)] = None
    return [p for p in parts if p is not None]


def _join(parts: list[_Part], with_test: Callable[[ev.FactTest, ev.Evaluator], ev.Evaluator],
          joined: Callable[[list[ev.Evaluator]], ev.Evaluator]) -> ev.Evaluator:
    """Operands joined by && or ||, a `fact op constant` one tested in place, not called.

    Both operators are commutative here, so that test can go first whatever its position.
    """
    for i, (_, test) in enumerate(parts):
        if test is not None and len(parts) > 1:
            rest = parts[:i] + parts[i + 1:]
            other = rest[0][0] if len(rest) == 1 else joined([e for e, _ in rest])
            return with_test(test, other)
    return joined([evaluator for evaluator, _ in parts])


def _union(needs: list[Needs]) -> Needs:
    if any(n is None for n in needs):
        return None
    return frozenset().union(*needs)  # type: ignore[arg-type]


def _intersection(needs: list[Needs]) -> Needs:
    present = [n for n in needs if n is not None]
    return frozenset.intersection(*present) if present else None


def _as_clauses(needs: Needs) -> Clauses:
    return None if needs is None else frozenset(frozenset({fact}) for fact in needs)


def _all_clauses(parts: list[Any]) -> Clauses:
    """Every operand must hold (&&): all their clauses, together."""
    if any(p is None for p in parts):
        return None
    return _simplify(frozenset().union(*parts))


def _any_clauses(parts: list[Any]) -> Clauses:
    """At least one operand must hold (||): each clause takes one clause from every operand
    that can hold (an operand that never can is no alternative)."""
    possible = [p for p in parts if p is not None]
    if not possible:
        return None
    result: frozenset[frozenset[str]] = frozenset({frozenset()})
    for clauses in possible:
        if not clauses:  # this operand needs nothing, so neither does the whole
            return frozenset()
        result = _simplify(frozenset(a | b for a in result for b in clauses))
    return result


def _simplify(clauses: frozenset[frozenset[str]]) -> frozenset[frozenset[str]]:
    """Drop clauses implied by smaller ones, and keep at most MAX_CLAUSES (the smallest)."""
    kept: list[frozenset[str]] = []
    for clause in sorted(clauses, key=lambda c: (len(c), sorted(c))):
        if not any(small <= clause for small in kept):
            kept.append(clause)
    return frozenset(kept[:MAX_CLAUSES])
