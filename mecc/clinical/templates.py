"""Prompt templates: a rule's summary and detail, filled in with the contact's facts.

Pure domain code. Templates are Jinja in a sandbox, rendering markdown or plain text (never
HTML). `check_template` test-renders a template when a rule is saved, with no facts and with the
widest plausible ones, so a template that could fail is refused then, not at a contact;
`render_prompt` fills one in for a contact, compiling each rule version's templates once.

A template is limited to what a prompt needs: placeholders, `{% if %}`, comparisons,
arithmetic and a few simple filters (mecc.clinical.template_limits). Loops, calls, powers and
repetition are refused when the rule is saved, with the line and column, because one of them
could hold a worker for minutes; and every render, wherever it runs (the API's dry-run, the
worker, CDS Hooks), is bounded in time and in the size of what it writes.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import date
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateError, TemplateSyntaxError, meta

from mecc.clinical.catalogue import Catalogue
from mecc.clinical.domain import RuleDef
from mecc.clinical.template_limits import (
    PromptSandbox,
    TemplateTooCostly,
    bounded_render,
    refused_constructs,
)

SUMMARY_MAX_CHARS = 140
# Templates fail when they do arithmetic on a fact the contact lacks; such errors surface
# as these types (jinja2 raises plain Python errors from inside filters).
RENDER_ERRORS = (TemplateError, TypeError, ValueError, ArithmeticError)


class _Blank(ChainableUndefined):
    """A fact the contact lacks: renders as empty text, and so does arithmetic or rounding on
    it (`{{ bmi|round(1) }}`); comparisons with it are false. Conversions that must produce a
    number (`|int`, `|format`) still fail, and are caught when the rule is saved."""

    __slots__ = ()

    def _blank(self, *args: Any, **kwargs: Any) -> _Blank:
        return self

    def _false(self, other: Any) -> bool:
        return False

    # The base class types these as never returning; here they return the blank instead.
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _blank  # type: ignore[assignment]
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _blank  # type: ignore[assignment]
    __mod__ = __rmod__ = __pow__ = __rpow__ = __pos__ = __neg__ = _blank  # type: ignore[assignment]
    __abs__ = __round__ = __call__ = _blank  # type: ignore[assignment]
    __lt__ = __le__ = __gt__ = __ge__ = _false  # type: ignore[assignment]


# Output is markdown or plain text, never HTML, so no autoescaping.
_ENV = PromptSandbox(autoescape=False, undefined=_Blank)
# `{{ recorded.hba1c_mmol_mol }}`: the day a fact the rule read was recorded ("3 March 2026"),
# blank when the sender gave no date. A prompt says which value and date it rests on.
_ENV.globals["recorded"] = {}
_WIDEST_DAY = "30 September 2026"
_CACHE_SIZE = 2048
_cache: OrderedDict[tuple[str, int], tuple[str, str, Template | None, Template | None]] = \
    OrderedDict()
_cache_lock = threading.Lock()


class PromptTemplate:
    """A checked, compiled template whose every render is bounded (see template_limits)."""

    def __init__(self, template: Template) -> None:
        self.template = template

    def render(self, facts: Mapping[str, Any]) -> str:
        return bounded_render(self.template, facts)


def _compiled(source: str) -> Template | None:
    """The compiled template, or None when it uses what templates may not (a version stored
    before the limits: it renders as its text without placeholders) or does not compile."""
    try:
        if refused_constructs(_ENV.parse(source), source):
            return None
        return _ENV.from_string(source)
    except TemplateError:
        return None


def _templates(rule: RuleDef) -> tuple[Template | None, Template | None]:
    """The compiled summary and detail templates of one rule version (compiled once)."""
    cache_key = (rule.key, rule.version)
    with _cache_lock:
        hit = _cache.get(cache_key)
        # A dry-run draft may reuse a stored rule's key and version with other text.
        if hit and hit[0] == rule.summary and hit[1] == rule.detail:
            _cache.move_to_end(cache_key)
            return hit[2], hit[3]
    compiled = (_compiled(rule.summary), _compiled(rule.detail))
    with _cache_lock:
        _cache[cache_key] = (rule.summary, rule.detail, *compiled)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


def fit_summary(text: str) -> str:
    """One line of at most 140 characters; longer text is cut at a word and ends with '…'."""
    text = " ".join(text.split())
    if len(text) <= SUMMARY_MAX_CHARS:
        return text
    cut = text[: SUMMARY_MAX_CHARS - 1]
    space = cut.rfind(" ")
    if space >= SUMMARY_MAX_CHARS * 2 // 3:  # don't throw away half the line for a long word
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


def _strip_tags(source: str) -> str:
    return re.sub(r"{{.*?}}|{%.*?%}|{#.*?#}", "", source, flags=re.S)


def day_text(recorded: str) -> str:
    """'2026-03-03' or '2026-03-03T09:30:00+01:00' -> '3 March 2026' (the sender's own day)."""
    day = date.fromisoformat(recorded.strip()[:10])
    return f"{day.day} {day:%B %Y}"


def render_prompt(rule: RuleDef, facts: Mapping[str, Any],
                  dates: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The rule's summary (one line, <= 140 characters) and detail (markdown) for these facts.

    Facts the contact lacks render as empty text. `dates` (fact -> ISO date or date-time) fill
    `recorded`. Templates were test-rendered when the rule was saved; should one still fail on
    an unusual value, the prompt falls back to its text without placeholders rather than losing
    the prompt.
    """
    summary_tmpl, detail_tmpl = _templates(rule)
    context = dict(facts)
    if dates:
        context["recorded"] = {fact: day_text(text) for fact, text in dates.items() if text}
    return fit_summary(_render_or_text(summary_tmpl, rule.summary, context)), \
        _render_or_text(detail_tmpl, rule.detail, context)


def _render_or_text(template: Template | None, source: str, context: Mapping[str, Any]) -> str:
    if template is not None:
        try:
            return bounded_render(template, context)
        except RENDER_ERRORS:
            pass
    return _strip_tags(source)


def widest_facts(catalogue: Catalogue) -> dict[str, Any]:
    """A value for every fact that renders as wide as that fact plausibly gets."""
    sample: dict[str, Any] = {}
    for name, spec in catalogue.facts.items():
        if spec.type == "int":
            sample[name] = int(max(abs(spec.min or 0), abs(spec.max or 999_999)))
        elif spec.type == "double":
            sample[name] = float(max(abs(spec.min or 0), abs(spec.max or 99_999))) + 0.25
        elif spec.type == "bool":
            sample[name] = False
        else:
            sample[name] = max(spec.values, key=len) if spec.values else "x" * 24
    sample["recorded"] = dict.fromkeys(catalogue.facts, _WIDEST_DAY)
    return sample


def check_template(
    source: str, field: str, catalogue: Catalogue, errors: list[dict[str, Any]],
) -> PromptTemplate | None:
    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        errors.append({"path": field, "message": f"Template syntax error: {exc.message}",
                       "line": exc.lineno})
        return None
    refused = refused_constructs(ast, source)
    if refused:
        errors.extend({"path": field, **item} for item in refused)
        return None
    unknown = sorted(meta.find_undeclared_variables(ast) - set(catalogue.facts) - set(_ENV.globals))
    for name in unknown:
        close = difflib.get_close_matches(name, list(catalogue.facts), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        errors.append({"path": field, "message": f"Unknown fact '{name}' in template.{hint}"})
    if unknown:
        return None
    template = PromptTemplate(_ENV.from_string(source))
    for label, facts in (("no facts are known", {}),
                         ("facts are known", widest_facts(catalogue))):
        try:
            template.render(facts)
        except TemplateTooCostly as exc:
            errors.append({"path": field, "message": f"Template is too costly to fill in when "
                           f"{label}: {exc}"})
            return None
        except RENDER_ERRORS as exc:
            errors.append({"path": field, "message": f"Template fails when {label}: {exc}. "
                           "Guard a fact that may be unknown with {% if fact is defined %}."})
            return None
    return template
