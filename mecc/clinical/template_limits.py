"""What a prompt template may do, and the bounds on every render.

A security walk found that a draft rule whose detail nested two `range(100000)` loops held an
API worker for 70 s, and that `{{ 9 ** 3000000 }}` cost 2 s to compile. Prompts need
placeholders, `{% if %}`, comparisons, a little arithmetic and a few filters, so a template is
held to exactly that:

- `refused_constructs` walks the parsed template (before it is ever compiled: Jinja folds
  constants such as `9 ** 3000000` while compiling) against an allow-list of node types and
  filters, and names each refusal with its line and column. Rules are refused at save.
- `PromptSandbox` runs what passes: no globals (no `range`, `lipsum`, `cycler`), the allowed
  filters only, each bounded in the size of what it makes, and the operators that could
  make something huge (`*` on text or lists, `**`, `%` formatting) checked before they run.
- `bounded_render` stops a render that runs past RENDER_SECONDS or writes more than
  MAX_RENDERED_CHARS.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from functools import wraps
from typing import Any

from jinja2 import Template, TemplateRuntimeError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

# A detail is a few paragraphs of markdown; the stored template is at most 20,000 characters.
MAX_RENDERED_CHARS = 40_000
# Far above what a real template takes (well under a millisecond), so a busy machine never
# trips it, and far below what would stall a worker.
RENDER_SECONDS = 1.0
# Filters a prompt needs (rounding a number, a default, case, tidying text). Anything else,
# `center`, `indent`, `wordwrap`, `format`, `join`, `batch` among them, is refused.
ALLOWED_FILTERS = frozenset({
    "abs", "capitalize", "count", "d", "default", "float", "int", "length", "lower", "replace",
    "round", "string", "title", "trim", "upper",
})
_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.If, nodes.Const, nodes.Name,
    nodes.Getattr, nodes.Getitem, nodes.Slice, nodes.CondExpr, nodes.And, nodes.Or, nodes.Not,
    nodes.Neg, nodes.Pos, nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod,
    nodes.Concat, nodes.Compare, nodes.Operand, nodes.Filter, nodes.Test, nodes.List,
    nodes.Tuple, nodes.Keyword,
)
# What each refused construct is called, and where to look for it on its line (the Jinja
# parser keeps a line number per node, not a column).
_REFUSED: dict[type[nodes.Node], tuple[str, str]] = {
    nodes.For: ("Loops ({% for %})", r"{%-?\s*for\b"),
    nodes.Pow: ("Powers (**)", r"\*\*"),
    nodes.Call: ("Calling a function or method", r"\w+\s*\("),
    nodes.Macro: ("Macros", r"{%-?\s*macro\b"),
    nodes.CallBlock: ("Call blocks", r"{%-?\s*call\b"),
    nodes.FilterBlock: ("Filter blocks", r"{%-?\s*filter\b"),
    nodes.Assign: ("Assignments ({% set %})", r"{%-?\s*set\b"),
    nodes.AssignBlock: ("Assignments ({% set %})", r"{%-?\s*set\b"),
    nodes.With: ("{% with %}", r"{%-?\s*with\b"),
    nodes.Dict: ("Dictionaries", r"{"),
}

_deadline: ContextVar[float | None] = ContextVar("mecc_template_deadline", default=None)


class TemplateTooCostly(TemplateRuntimeError):
    """A render went past its time or size bound (a TemplateError: callers fall back)."""


def _column(source: str, lineno: int, pattern: str) -> int:
    lines = source.splitlines() or [""]
    line = lines[min(max(lineno, 1), len(lines)) - 1]
    found = re.search(pattern, line)
    return found.start() + 1 if found else 1


def _refusal(node: nodes.Node, source: str, message: str, pattern: str) -> dict[str, Any]:
    lineno = getattr(node, "lineno", 1) or 1
    return {"message": message, "line": lineno, "column": _column(source, lineno, pattern)}


def _is_sequence_literal(node: nodes.Node) -> bool:
    return isinstance(node, nodes.List | nodes.Tuple) or (
        isinstance(node, nodes.Const) and isinstance(node.value, str | list | tuple))


def refused_constructs(ast: nodes.Template, source: str) -> list[dict[str, Any]]:
    """Each construct a prompt template may not use: {"message", "line", "column"}."""
    refused: list[dict[str, Any]] = []
    for node in ast.find_all(nodes.Node):
        kind = type(node)
        if kind in _REFUSED:
            what, pattern = _REFUSED[kind]
            refused.append(_refusal(node, source, f"{what} may not be used in a prompt "
                                    "template: use placeholders, {% if %} and filters.", pattern))
        elif not isinstance(node, _ALLOWED_NODES):
            tag = kind.__name__.lower()
            refused.append(_refusal(node, source, f"'{tag}' may not be used in a prompt "
                                    "template.", rf"{{%-?\s*{tag}\b"))
        elif isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
            refused.append(_refusal(node, source, f"The filter '{node.name}' may not be used "
                                    f"in a prompt template; use one of: "
                                    f"{', '.join(sorted(ALLOWED_FILTERS))}.",
                                    rf"\|\s*{re.escape(node.name)}\b"))
        elif isinstance(node, nodes.Mul) and (_is_sequence_literal(node.left)
                                              or _is_sequence_literal(node.right)):
            refused.append(_refusal(node, source, "Repeating text or lists (*) may not be used "
                                    "in a prompt template.", r"\*"))
        elif isinstance(node, nodes.Mod) and _is_sequence_literal(node.left):
            refused.append(_refusal(node, source, "Formatting text with % may not be used in a "
                                    "prompt template; use placeholders.", r"%(?=\s)"))
    unique: list[dict[str, Any]] = []
    for item in refused:  # nested loops on one line would otherwise say the same thing twice
        if item not in unique:
            unique.append(item)
    return unique


def _tick() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise TemplateTooCostly(f"The template took longer than {RENDER_SECONDS} s to fill in.")


def _check_size(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_RENDERED_CHARS:
        raise TemplateTooCostly(f"The template makes more than {MAX_RENDERED_CHARS} "
                                "characters.")
    return value


def _bounded(filter_function: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(filter_function)  # keeps jinja_pass_arg, so Jinja passes what the filter expects
    def run(*args: Any, **kwargs: Any) -> Any:
        _tick()
        return _check_size(filter_function(*args, **kwargs))

    return run


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    """str.replace that refuses, before building it, a result past MAX_RENDERED_CHARS (chained
    replaces otherwise multiply a short text into gigabytes)."""
    text, old, new = str(value), str(old), str(new)
    hits = (text.count(old) if old else len(text) + 1)
    if count is not None and count >= 0:
        hits = min(hits, int(count))
    if len(text) + hits * max(0, len(new) - len(old)) > MAX_RENDERED_CHARS:
        raise TemplateTooCostly(f"The template makes more than {MAX_RENDERED_CHARS} "
                                "characters.")
    return text.replace(old, new, -1 if count is None else int(count))


class PromptSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, narrowed to what prompt templates may do.

    `+`, `*`, `**` and `%` are intercepted, which also stops Jinja folding them as constants
    at compile time; their cost is checked before they run.
    """

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.clear()
        kept = {name: _bounded(self.filters[name]) for name in ALLOWED_FILTERS - {"replace"}}
        kept["replace"] = _bounded(_replace)
        self.filters = kept

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "**":
            raise SecurityError("Powers (**) may not be used in a prompt template.")
        if operator == "%" and isinstance(left, str):
            raise SecurityError("Formatting text with % may not be used in a prompt template.")
        if operator == "+" and isinstance(left, str | list | tuple) \
                and isinstance(right, str | list | tuple) \
                and len(left) + len(right) > MAX_RENDERED_CHARS:
            raise TemplateTooCostly(f"The template makes more than {MAX_RENDERED_CHARS} "
                                    "characters.")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(times, int) \
                        and len(sequence) * max(0, times) > MAX_RENDERED_CHARS:
                    raise TemplateTooCostly("Repeating text or lists (*) makes more than "
                                            f"{MAX_RENDERED_CHARS} characters.")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)


def bounded_render(template: Template, context: Mapping[str, Any]) -> str:
    """Render within RENDER_SECONDS and MAX_RENDERED_CHARS (else TemplateTooCostly)."""
    token = _deadline.set(time.monotonic() + RENDER_SECONDS)
    try:
        return "".join(_bounded_chunks(template.generate(dict(context))))
    finally:
        _deadline.reset(token)


def _bounded_chunks(chunks: Iterator[str]) -> Iterator[str]:
    written = 0
    for chunk in chunks:
        written += len(chunk)
        if written > MAX_RENDERED_CHARS:
            raise TemplateTooCostly(f"The template makes more than {MAX_RENDERED_CHARS} "
                                    "characters.")
        _tick()
        yield chunk
