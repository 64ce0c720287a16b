"""Rule expressions, step 1: the grammar, the size limits and readable syntax errors.

Pure domain code. `parse_expression` turns source text into a lark tree, or into diagnostics a
rule author can act on. It is bounded: over-long, over-large or over-deep input is refused with
a diagnostic before anything walks the tree recursively, so no input can raise RecursionError.
See docs/rule-language.md for the language itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

MAX_LENGTH = 4000
MAX_NODES = 500
MAX_DEPTH = 64


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a rule expression, at a 1-based line and column."""

    line: int
    column: int
    message: str
    hint: str | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"line": self.line, "column": self.column, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


# A subset of CEL's grammar (cel-spec langdef.md) with the same precedence: unary binds tighter
# than comparisons (so `!a == b` is `(!a) == b`, as in CEL), then comparisons, `&&`, `||`.
# Comparisons are left-recursive, as in CEL, so that `a <= b <= c` parses and can be refused
# with a useful message instead of a bare syntax error.
_GRAMMAR = r"""
?start: expr
?expr: or_expr
?or_expr: and_expr | or_expr OR and_expr -> or_
?and_expr: rel | and_expr AND rel -> and_
?rel: unary
    | rel (EQ | NE | LT | LE | GT | GE) unary -> compare
    | rel IN unary -> in_
?unary: primary | NOT unary -> not_ | MINUS unary -> neg
?primary: INT -> int_
    | DOUBLE -> double
    | STRING -> string
    | TRUE -> true
    | FALSE -> false
    | IDENT -> ident
    | "(" expr ")" -> paren
    | IDENT "(" (expr ("," expr)*)? ")" -> call
    | "[" (expr ("," expr)* ","?)? "]" -> list

OR: "||"
AND: "&&"
NOT: "!"
MINUS: "-"
EQ: "=="
NE: "!="
LE: "<="
GE: ">="
LT: "<"
GT: ">"
IN: "in"
TRUE: "true"
FALSE: "false"
DOUBLE: /[0-9]+\.[0-9]+([eE][+-]?[0-9]+)?/ | /[0-9]+[eE][+-]?[0-9]+/
INT: /[0-9]+/
STRING: /'(?:[^'\\\r\n]|\\.)*'/ | /"(?:[^"\\\r\n]|\\.)*"/
IDENT: /[A-Za-z_][A-Za-z0-9_]*/
COMMENT: /\/\/[^\n]*/
%ignore COMMENT
%ignore /[ \t\r\n]+/
"""


@cache
def _parser() -> Lark:
    # Built on first use, not at import time; a Lark LALR parser keeps no per-parse state.
    return Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


_OPERAND_STARTS = frozenset(
    {"INT", "DOUBLE", "STRING", "TRUE", "FALSE", "IDENT", "LPAR", "LSQB", "NOT", "MINUS"})
_OPERATORS = frozenset({"OR", "AND", "EQ", "NE", "LE", "GE", "LT", "GT", "IN"})
_WORD_OPERATORS = {"and": "&&", "or": "||", "not": "!"}
_CHAR_HINTS = {
    "=": "compare with '=='",
    "&": "'and' is written '&&'",
    "|": "'or' is written '||'",
    "+": "arithmetic is not part of the rule language",
    "*": "arithmetic is not part of the rule language",
    "/": "arithmetic is not part of the rule language",
    "%": "arithmetic is not part of the rule language",
    "?": "the conditional operator '? :' is not part of the rule language",
    ":": "the conditional operator '? :' is not part of the rule language",
    "{": "maps are not part of the rule language",
    "}": "maps are not part of the rule language",
}


def first_token(tree: Tree[Token], index: int = 0) -> Token:
    """The token at `index` among a tree's children (a name, a literal's text, an operator)."""
    child = tree.children[index]
    assert isinstance(child, Token)
    return child


def subtree(tree: Tree[Token], index: int) -> Tree[Token]:
    """The sub-expression at `index` among a tree's children (the grammar puts one there)."""
    child = tree.children[index]
    assert isinstance(child, Tree)
    return child


def subtrees(tree: Tree[Token]) -> list[Tree[Token]]:
    """A list's items, a call's arguments: every child that is a sub-expression."""
    return [child for child in tree.children if isinstance(child, Tree)]


def did_you_mean(word: str, candidates: Iterable[str], quote: bool = False) -> str | None:
    """The closest candidates (all of them when equally close: diabetes_type1 or _type2)."""
    matches = difflib.get_close_matches(word, sorted(candidates), n=3, cutoff=0.6)
    if not matches:
        return None
    best = difflib.SequenceMatcher(None, matches[0], word).ratio()
    tied = sorted(m for m in matches if difflib.SequenceMatcher(None, m, word).ratio() == best)
    shown = [f"'{m}'" if quote else m for m in tied]
    return f"did you mean {' or '.join(shown)}?"


def position_at(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset (the end of the text is allowed)."""
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def parse_expression(source: str) -> Tree[Token] | list[Diagnostic]:
    """Parse and bound-check an expression: its tree, or the diagnostics that stop it."""
    if len(source) > MAX_LENGTH:
        line, column = position_at(source, MAX_LENGTH)
        return [Diagnostic(line, column,
                           f"expression is too long ({len(source)} characters; the limit is "
                           f"{MAX_LENGTH})", "split it into simpler rules")]
    if not source.strip():
        return [Diagnostic(1, 1, "expression is empty", "write a condition, e.g. age >= 18")]
    try:
        tree = _parser().parse(source)
    except UnexpectedInput as exc:
        return [_syntax_diagnostic(source, exc)]
    return _check_size(tree)


def _check_size(tree: Tree[Token]) -> Tree[Token] | list[Diagnostic]:
    # Iterative on purpose: the tree may be thousands of levels deep at this point.
    count = 0
    stack: list[tuple[Tree[Token], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            return [Diagnostic(node.meta.line, node.meta.column,
                               f"expression is nested too deeply (the limit is {MAX_DEPTH} "
                               "levels)", "split it into simpler rules")]
        for child in node.children:
            if isinstance(child, Tree):
                # `a && b && c` is a left-leaning chain of and_ nodes but one level of logic:
                # a long list of conditions is not deep nesting.
                flat = child.data == node.data and node.data in ("and_", "or_")
                stack.append((child, depth if flat else depth + 1))
    if count > MAX_NODES:
        return [Diagnostic(tree.meta.line, tree.meta.column,
                           f"expression is too large ({count} parts; the limit is {MAX_NODES})",
                           "split it into simpler rules")]
    return tree


def _syntax_diagnostic(source: str, exc: UnexpectedInput) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(source, exc)
    if isinstance(exc, UnexpectedToken):
        return _bad_token(source, exc)
    line, column = position_at(source, len(source))  # UnexpectedEOF: not raised by LALR
    return Diagnostic(line, column, "syntax error: unexpected end of expression")


def _bad_character(source: str, exc: UnexpectedCharacters) -> Diagnostic:
    char, pos = exc.char, exc.pos_in_stream or 0
    line, column = exc.line, exc.column
    if char in "'\"":
        return Diagnostic(line, column, "syntax error: unterminated string",
                          "close the string with the same quote on the same line")
    if char == ".":
        if source[pos + 1:pos + 2].isdigit():
            hint = "write decimals with a leading digit, e.g. 0.5"
        else:
            hint = "field access and method calls are not part of the rule language"
        return Diagnostic(line, column, "syntax error: unexpected '.'", hint)
    if char == "!" and source[pos:pos + 2] != "!=":  # `!` where an operator was expected
        return Diagnostic(line, column, "syntax error: unexpected '!'",
                          "put ! before a condition, e.g. !known('audit')")
    return Diagnostic(line, column, f"syntax error: unexpected character {char!r}",
                      _CHAR_HINTS.get(char))


def _bad_token(source: str, exc: UnexpectedToken) -> Diagnostic:
    token: Token = exc.token
    # accepts() replays the parser to list what could really come next; `expected` alone also
    # lists tokens of default reductions, which would make the hint misleading.
    parser = exc.interactive_parser
    expected = set(exc.expected)
    if parser is not None:
        # lark leaves accepts() unannotated; it returns the names of the acceptable tokens.
        expected = set(parser.accepts())  # type: ignore[no-untyped-call]
    hint = _describe_expected(expected)
    if token.type == "$END":
        line, column = position_at(source, len(source))
        return Diagnostic(line, column, "syntax error: unexpected end of expression", hint)
    line, column = token.line or 1, token.column or 1
    if token.type == "IDENT" and token.value in _WORD_OPERATORS:
        hint = f"'{token.value}' is written '{_WORD_OPERATORS[token.value]}'"
    elif token.type == "MINUS":
        hint = "arithmetic is not part of the rule language"
    elif token.type == "NOT" and "EQ" in expected:
        hint = "put ! before a condition, e.g. !known('audit')"
    return Diagnostic(line, column, f"syntax error: unexpected {_describe_token(token)}", hint)


def _describe_token(token: Token) -> str:
    if token.type == "IDENT":
        return f"name '{token.value}'"
    if token.type in ("INT", "DOUBLE"):
        return f"number {token.value}"
    if token.type == "STRING":
        return f"string {token.value}"
    return f"'{token.value}'"


def _describe_expected(names: set[str]) -> str | None:
    parts = []
    if names & _OPERAND_STARTS:
        parts.append("a fact, a value or '('")
    if names & _OPERATORS:
        parts.append("an operator such as '==', '&&' or '||'")
    parts += [text for name, text in (("RPAR", "')'"), ("RSQB", "']'"), ("COMMA", "','"))
              if name in names]
    if "$END" in names:
        parts.append("the end of the expression")
    return "expected " + " or ".join(parts) if parts else None
