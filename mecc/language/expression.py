"""The rule expression language: a documented subset of CEL, checked and compiled once.

Pure domain code (no Flask, Celery or database). Administrators write a rule's `when` in this
language; it is type-checked against the fact catalogue when saved, compiled once per rule
version into plain Python closures (never eval/exec), and evaluated per contact with CEL's
three-valued logic: a fact the event lacks is unknown (None), and unknown absorbs like CEL's
error value. The reference for rule authors is docs/rule-language.md.

    expression = compile_expression("smoking_status == 'current' && age >= 16", catalogue)
    expression.evaluate(context)  # True, False or None (unknown: the rule does not match)

The work is split by step: `syntax` (grammar, limits, syntax errors), `check` and `functions`
(type checking and assembly), `nodes` (the typed nodes and what each needs known) and `evaluate`
(the closures); this module is the front door, re-exported by `mecc.rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mecc.clinical.catalogue import Catalogue
from mecc.clinical.domain import EvalContext
from mecc.language.check import Checked, check_tree
from mecc.language.nodes import Leaf
from mecc.language.syntax import Diagnostic, parse_expression


class RuleCompileError(ValueError):
    """An expression that does not compile; `diagnostics` says where and why."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(f"{d.line}:{d.column}: {d.message}" for d in self.diagnostics))


@dataclass(frozen=True)
class Explanation:
    """The value of one sub-condition of an expression for one contact."""

    text: str  # the source text of the sub-condition
    line: int
    column: int
    value: bool | None

    def to_dict(self) -> dict[str, object]:
        return {"condition": self.text, "line": self.line, "column": self.column,
                "value": "unknown" if self.value is None else self.value}


class CompiledExpression:
    """A checked expression, ready to evaluate any number of times (immutable, thread-safe).

    `facts` and `groups` are every fact and condition group it reads. `required_facts` are the
    facts that must all be present for it to be true, so a rule can be skipped for an event that
    lacks any of them.
    """

    __slots__ = ("source", "facts", "groups", "required_facts", "required_any", "evaluate",
                 "_leaves")

    source: str
    facts: frozenset[str]
    groups: frozenset[str]
    required_facts: frozenset[str]
    required_any: frozenset[frozenset[str]]
    """Clauses: for the expression to be true, each clause needs one of its facts present."""
    evaluate: Callable[[EvalContext], bool | None]
    """evaluate(ctx) -> True, False, or None when unknown. Never raises.

    The compiled closure itself rather than a method, which saves a call per rule per event.
    """
    _leaves: tuple[Leaf, ...]

    def __init__(self, source: str, checked: Checked) -> None:
        assert checked.evaluator is not None, "only checked expressions without errors"
        for name, value in (
            ("source", source), ("facts", checked.facts), ("groups", checked.groups),
            ("required_facts", checked.required_facts),
            ("required_any", checked.required_any), ("evaluate", checked.evaluator),
            ("_leaves", checked.leaves),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"CompiledExpression is immutable (cannot set {name!r})")

    def matches(self, ctx: EvalContext) -> bool:
        """Whether the rule fires: an unknown condition does not match."""
        return self.evaluate(ctx) is True

    def explain(self, ctx: EvalContext) -> list[Explanation]:
        """Every leaf sub-condition in source order, each with its own value for `ctx`."""
        return [Explanation(self.source[leaf.start:leaf.end], leaf.line, leaf.column,
                            leaf.evaluator(ctx)) for leaf in self._leaves]

    def __repr__(self) -> str:
        return f"CompiledExpression({self.source!r})"


def _check(source: str, catalogue: Catalogue) -> Checked:
    if not isinstance(source, str):
        return Checked(None, [Diagnostic(1, 1, "the expression must be text")])
    tree = parse_expression(source)
    if isinstance(tree, list):
        return Checked(None, tree)
    return check_tree(tree, source, catalogue)


def check_expression(source: str, catalogue: Catalogue) -> list[Diagnostic]:
    """The problems with an expression, in source order; [] when it compiles. Never raises."""
    return sorted(_check(source, catalogue).diagnostics, key=lambda d: (d.line, d.column))


def compile_expression(source: str, catalogue: Catalogue) -> CompiledExpression:
    """Check and compile an expression, or raise RuleCompileError with its diagnostics."""
    checked = _check(source, catalogue)
    if checked.diagnostics or checked.evaluator is None:
        raise RuleCompileError(sorted(checked.diagnostics, key=lambda d: (d.line, d.column)))
    return CompiledExpression(source, checked)
