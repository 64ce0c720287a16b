"""Rule expressions, step 2: type-check a parsed expression against the catalogue and build it.

Pure domain code. One walk over the lark tree from `syntax` (already bounded in size and
depth, so recursion here is safe) checks every name, function and operand type, collects every
diagnostic it can (not just the first), and assembles the evaluator closures from `evaluate`.
Function calls are checked in `functions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lark import Token, Tree

from mecc.clinical.catalogue import Catalogue
from mecc.language import evaluate as ev
from mecc.language.functions import FUNCTIONS, LITERALS, SIGNATURES, check_call
from mecc.language.nodes import EMPTY, NO_VALUE, ORDERING, Leaf, Node, join_all, join_any, negate
from mecc.language.syntax import (
    Diagnostic,
    did_you_mean,
    first_token,
    position_at,
    subtree,
    subtrees,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_NOUNS = {"int": "a number", "double": "a number", "string": "text", "bool": "true or false"}
_PLURALS = {"int": "numbers", "double": "numbers", "string": "text values",
            "bool": "true/false values"}
_LOGIC = frozenset({"and_", "or_", "not_", "true", "false"})
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class Checked:
    evaluator: ev.Evaluator | None
    diagnostics: list[Diagnostic]
    facts: frozenset[str] = EMPTY
    groups: frozenset[str] = EMPTY
    required_facts: frozenset[str] = EMPTY
    leaves: tuple[Leaf, ...] = field(default_factory=tuple)
    required_any: frozenset[frozenset[str]] = frozenset()


def check_tree(tree: Tree[Token], source: str, catalogue: Catalogue) -> Checked:
    checker = Checker(source, catalogue)
    root = checker.condition(tree, "the condition")
    if checker.diagnostics or root.type == "error":
        return Checked(None, checker.diagnostics)
    return Checked(
        root.evaluator, [], frozenset(checker.facts), frozenset(checker.groups),
        root.true_needs or EMPTY, tuple(sorted(checker.leaves, key=lambda leaf: leaf.start)),
        root.true_clauses or frozenset(),  # type: ignore[arg-type]
    )


def _unparen(tree: Tree[Token]) -> Tree[Token]:
    while tree.data == "paren":
        tree = subtree(tree, 0)
    return tree


def _is_relation(tree: Tree[Token] | Token) -> bool:
    return isinstance(tree, Tree) and tree.data in ("compare", "in_")


class Checker:
    """One walk over one expression: the diagnostics, and the facts and groups it reads."""

    def __init__(self, source: str, catalogue: Catalogue) -> None:
        self.source = source
        self.catalogue = catalogue
        self.diagnostics: list[Diagnostic] = []
        self.facts: set[str] = set()
        self.groups: set[str] = set()
        self.leaves: list[Leaf] = []

    # --- helpers ---------------------------------------------------------------------------

    def error(self, at: Tree[Token] | Token, message: str, hint: str | None = None) -> Node:
        if isinstance(at, Token):
            line, column = at.line or 1, at.column or 1
        else:
            line, column = at.meta.line, at.meta.column
        self.diagnostics.append(Diagnostic(line, column, message, hint))
        return Node("error", at if isinstance(at, Tree) else Tree("error", []))

    def text(self, at: Tree[Token] | Token, limit: int = 40) -> str:
        if isinstance(at, Token):
            start, end = at.start_pos or 0, at.end_pos or 0
        else:
            start, end = at.meta.start_pos, at.meta.end_pos
        text = " ".join(self.source[start:end].split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def describe(self, node: Node) -> str:
        return f"{self.text(node.tree)} is {_NOUNS.get(node.type, node.type)}"

    # --- conditions (operands of && || ! and the whole expression) -------------------------

    def condition(self, tree: Tree[Token], role: str, hint: str | None = None) -> Node:
        """A node in a place that needs true or false; a leaf for explain() unless && || !."""
        node = self.expr(tree)
        if node.type == "error":
            return node
        if node.type != "bool":
            return self.error(tree, f"{role} must be true or false, but {self.describe(node)}",
                              hint or self._condition_hint(node))
        inner = _unparen(tree)
        if inner.data not in _LOGIC:
            meta = inner.meta
            self.leaves.append(
                Leaf(meta.start_pos, meta.end_pos, meta.line, meta.column, node.evaluator))
        return node

    def _condition_hint(self, node: Node) -> str | None:
        spec = node.spec
        if spec is None:
            return None
        if node.is_number:
            example = spec.min if spec.min is not None else 0
            return f"compare it with a number, e.g. {spec.name} >= {example:g}"
        if spec.values:
            return f"compare it with one of its values, e.g. {spec.name} == '{spec.values[0]}'"
        return f"compare it with a value, e.g. {spec.name} == '...'"

    def logic(self, whole: Tree[Token]) -> Node:
        op, tree = whole.data, whole
        operands: list[Tree[Token]] = []
        while tree.data == op:  # a && b && c arrives as ((a && b) && c): flatten it
            operands.append(subtree(tree, 2))
            tree = subtree(tree, 0)
        operands.append(tree)
        operands.reverse()
        role = "each side of '&&'" if op == "and_" else "each side of '||'"
        nodes = [self.condition(t, role) for t in operands]
        if any(n.type == "error" for n in nodes):
            return Node("error", whole)
        return join_all(whole, nodes) if op == "and_" else join_any(whole, nodes)

    def negation(self, tree: Tree[Token]) -> Node:
        # `!bmi > 30` is `(!bmi) > 30`, as in CEL: the usual slip, hence the hint.
        operand = self.condition(
            subtree(tree, 1), "the operand of '!'",
            "'!' applies to what follows it; to negate a comparison write !(a > b)")
        if operand.type == "error":
            return operand
        return negate(tree, operand)

    # --- expressions -----------------------------------------------------------------------

    def expr(self, tree: Tree[Token]) -> Node:
        kind = tree.data
        if kind == "paren":
            return self.expr(subtree(tree, 0))
        if kind in ("and_", "or_"):
            return self.logic(tree)
        if kind == "not_":
            return self.negation(tree)
        if kind == "compare":
            return self.comparison(tree)
        if kind == "in_":
            return self.membership(tree)
        if kind == "ident":
            return self.identifier(tree)
        if kind == "call":
            return check_call(self, tree)
        if kind == "list":
            return self.error(tree, "a list can only be used after 'in'",
                              "e.g. ethnicity_group in ['chinese', 'white']")
        return self.literal(tree)

    def literal(self, tree: Tree[Token]) -> Node:
        kind = tree.data
        if kind in ("true", "false"):
            value = kind == "true"
            return Node("bool", tree, ev.constant(value), const=value,
                        true_needs=EMPTY if value else None, false_needs=None if value else EMPTY)
        if kind == "neg":
            return self.negative(tree)
        token = first_token(tree)
        if kind == "string":
            text = self.string(token)
            if text is None:
                return Node("error", tree)
            return Node("string", tree, ev.constant(text), const=text)
        return self.number(tree, kind, token.value, negative=False)

    def number(self, tree: Tree[Token], kind: str, text: str, negative: bool) -> Node:
        if kind == "int_":
            # Longer than any int64 (and keeps int() away from its digit limit).
            value = int(text) if len(text) <= 20 else INT64_MAX + 1
            value = -value if negative else value
            if not INT64_MIN <= value <= INT64_MAX:
                return self.error(tree, "whole number out of range (64-bit)")
            return Node("int", tree, ev.constant(value), const=value)
        number = -float(text) if negative else float(text)
        if not math.isfinite(number):
            return self.error(tree, "number out of range")
        return Node("double", tree, ev.constant(number), const=number)

    def negative(self, tree: Tree[Token]) -> Node:
        operand = tree.children[1]
        if isinstance(operand, Tree) and operand.data in ("int_", "double"):
            return self.number(tree, operand.data, first_token(operand).value, negative=True)
        return self.error(tree, "'-' can only be written before a number, e.g. -1",
                          "arithmetic is not part of the rule language")

    def string(self, token: Token) -> str | None:
        body: str = token.value[1:-1]
        if "\\" not in body:
            return body
        out, i = [], 0
        while i < len(body):
            char = body[i]
            if char != "\\":
                out.append(char)
                i += 1
                continue
            escaped = body[i + 1]  # the token's pattern guarantees a character follows
            if escaped not in _ESCAPES:
                line, column = position_at(self.source, (token.start_pos or 0) + 1 + i)
                self.diagnostics.append(Diagnostic(
                    line, column, f"unsupported escape '\\{escaped}' in a string",
                    "the escapes are \\\\ \\' \\\" \\n \\r \\t"))
                return None
            out.append(_ESCAPES[escaped])
            i += 2
        return "".join(out)

    def identifier(self, tree: Tree[Token]) -> Node:
        name = first_token(tree).value
        spec = self.catalogue.facts.get(name)
        if spec is not None:
            self.facts.add(name)
            needs = frozenset({name})
            if spec.type == "bool":
                return Node("bool", tree, ev.fact_condition(name), fact=name, spec=spec,
                            true_needs=needs, false_needs=needs,
                            negated=ev.fact_condition_negated(name))
            return Node(spec.type, tree, ev.fact_value(name), fact=name, spec=spec,
                        true_needs=needs, false_needs=needs)
        if name == "null":
            return self.error(tree, "null is not part of the rule language",
                              "a missing fact is unknown; test it with known('fact')")
        if name in ("True", "False", "TRUE", "FALSE"):
            return self.error(tree, f"unknown name '{name}'", "write true or false in lower case")
        if name in FUNCTIONS:
            return self.error(tree, f"{name} is a function", f"write {SIGNATURES[name]}")
        if name in self.catalogue.groups:
            return self.error(tree, f"unknown fact '{name}' ({name} is a condition group)",
                              f"write has_condition('{name}')")
        return self.error(tree, f"unknown fact '{name}'",
                          did_you_mean(name, self.catalogue.facts))

    # --- comparisons -----------------------------------------------------------------------

    def chained(self, tree: Tree[Token]) -> Node | None:
        """The `a <= b <= c` error, or None when the comparison is not chained."""
        if not _is_relation(tree.children[0]):
            return None
        while _is_relation(subtree(tree, 0).children[0]):
            tree = subtree(tree, 0)  # report the first chain in `a < b < c < d`
        inner, op, right = subtree(tree, 0), first_token(tree, 1), subtree(tree, 2)
        hint = None
        if inner.data == "compare":
            a, op1, b = inner.children
            hint = (f"write {self.text(a)} {op1} {self.text(b)} && "
                    f"{self.text(b)} {op} {self.text(right)}")
        return self.error(op, "chained comparison; write a <= b && b <= c", hint)

    def comparison(self, tree: Tree[Token]) -> Node:
        chain = self.chained(tree)
        if chain is not None:
            return chain
        left_tree, op, right_tree = subtree(tree, 0), first_token(tree, 1).value, subtree(tree, 2)
        left, right = self.expr(left_tree), self.expr(right_tree)
        if left.type == "error" or right.type == "error":
            return Node("error", tree)
        if op in ORDERING:
            for side, side_tree in ((left, left_tree), (right, right_tree)):
                if not side.is_number:
                    hint = None
                    if side_tree.data == "not_":
                        hint = "'!' applies before comparing: write !(a < b) to negate it"
                    return self.error(side_tree,
                                      f"'{op}' compares numbers, but {self.describe(side)}", hint)
        elif not (left.is_number and right.is_number) and left.type != right.type:
            hint = None
            fact = next((n.fact for n in (left, right) if n.type == "bool" and n.fact), None)
            if fact:
                hint = f"a true/false fact is a condition itself: write {fact} or !{fact}"
            return self.error(
                right_tree, f"cannot compare {self.text(left_tree)} "
                f"({_NOUNS[left.type]}) with {self.text(right_tree)} ({_NOUNS[right.type]})",
                hint)
        if not (self.check_value(left, right) and self.check_value(right, left)):
            return Node("error", tree)
        needs = left.known_needs | right.known_needs
        test = None
        if left.fact and right.const is not NO_VALUE:
            test = (left.fact, op, right.const)
        elif right.fact and left.const is not NO_VALUE:
            test = (right.fact, ev.MIRRORED[op], left.const)
        return Node("bool", tree, self.comparison_evaluator(op, left, right),
                    true_needs=needs, false_needs=needs, test=test)

    def comparison_evaluator(self, op: str, left: Node, right: Node) -> ev.Evaluator:
        if left.fact and right.const is not NO_VALUE:
            return ev.fact_compare(left.fact, op, right.const)
        if right.fact and left.const is not NO_VALUE:
            return ev.fact_compare(right.fact, ev.MIRRORED[op], left.const)
        ltc = self.catalogue.ltc_groups
        if left.counts_conditions and right.const is not NO_VALUE:
            return ev.condition_count_compare(ltc, op, right.const)
        if right.counts_conditions and left.const is not NO_VALUE:
            return ev.condition_count_compare(ltc, ev.MIRRORED[op], left.const)
        if left.const is not NO_VALUE and right.const is not NO_VALUE:
            return ev.constant(ev.COMPARATORS[op](left.const, right.const))
        return ev.compare(op, left.evaluator, right.evaluator)

    def check_value(self, fact: Node, literal: Node) -> bool:
        """A string fact with a fixed list of values, against a text literal not in it."""
        spec = fact.spec
        if spec is None or not spec.values or not isinstance(literal.const, str):
            return True
        if literal.const in spec.values:
            return True
        allowed = ", ".join(f"'{v}'" for v in spec.values)
        self.error(literal.tree, f"'{literal.const}' is not a value of {spec.name}; "
                   f"allowed: {allowed}", did_you_mean(literal.const, spec.values, quote=True))
        return False

    def membership(self, tree: Tree[Token]) -> Node:
        chain = self.chained(tree)
        if chain is not None:
            return chain
        left_tree, right_tree = subtree(tree, 0), subtree(tree, 2)
        left = self.expr(left_tree)
        list_tree = _unparen(right_tree)
        if list_tree.data != "list":
            right = self.expr(right_tree)
            if right.type != "error":
                self.error(right_tree, f"'in' needs a list on the right, but "
                           f"{self.describe(right)}",
                           "e.g. ethnicity_group in ['chinese', 'white']")
            return Node("error", tree)
        items = [self.list_item(t) for t in subtrees(list_tree)]
        if left.type == "error" or any(item.type == "error" for item in items):
            return Node("error", tree)
        if items:
            first = items[0]
            for item in items[1:]:
                if item.type != first.type and not (item.is_number and first.is_number):
                    return self.error(item.tree, "a list holds values of one type, but "
                                      f"{self.describe(item)} and {self.describe(first)}")
            if left.type != first.type and not (left.is_number and first.is_number):
                return self.error(left_tree, f"cannot look for {self.text(left_tree)} "
                                  f"({_NOUNS[left.type]}) in a list of {_PLURALS[first.type]}")
            if not all([self.check_value(left, item) for item in items]):
                return Node("error", tree)
        members = frozenset(item.const for item in items)
        if left.fact:
            evaluator = ev.fact_in(left.fact, members)
        elif left.const is not NO_VALUE:
            evaluator = ev.constant(left.const in members)
        else:
            evaluator = ev.value_in(left.evaluator, members)
        needs = left.known_needs
        return Node("bool", tree, evaluator, true_needs=needs, false_needs=needs)

    def list_item(self, tree: Tree[Token]) -> Node:
        if tree.data in LITERALS:
            return self.literal(tree)
        node = self.expr(tree)  # still checked, so its own mistakes are reported too
        if node.type == "error":
            return node
        return self.error(tree, "list items must be values written in the rule "
                          "(numbers, text, true or false)")
