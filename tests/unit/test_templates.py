"""Prompt templates: what they may use, and bounds on every render (issue 13, finding 2)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mecc.clinical import template_limits
from mecc.clinical.catalogue import load_catalogue
from mecc.clinical.domain import RuleDef
from mecc.clinical.templates import check_template, render_prompt
from tests.support import ROOT

CATALOGUE = load_catalogue(ROOT / "config")


def check(source: str) -> tuple[Any, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    return check_template(source, "prompt.detail", CATALOGUE, errors), errors


def rule(summary: str = "Talk about smoking", detail: str = "", version: int = 1) -> RuleDef:
    return RuleDef(key="tmpl-test", version=version, title="t", topic="smoking",
                   kind="lifestyle_conversation", when="true", priority=50, summary=summary,
                   detail=detail)


@pytest.mark.parametrize(("source", "words", "line", "column"), [
    ("Intro\n{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}"
     "{% endfor %}", "Loops", 2, 1),
    ("BMI {{ 9 ** 3000000 }}", "Powers", 1, 10),
    ("{{ 'x' * 100000000 }}", "Repeating", 1, 8),
    ("a\nb {{ ''.ljust(999999999) }}", "Calling", 2, 9),
    ("{{ bmi|center(99999999) }}", "filter 'center'", 1, 7),
    ("{{ '%999999999s' % 1 }}", "Formatting", 1, 18),
    ("{% set n = 3 %}{{ n }}", "Assignments", 1, 1),
    ("{% macro m() %}x{% endmacro %}", "Macros", 1, 1),
])
def test_costly_constructs_are_refused_with_line_and_column(source: str, words: str,
                                                             line: int, column: int) -> None:
    started = time.monotonic()
    template, errors = check(source)
    assert time.monotonic() - started < 0.5  # refused before anything is compiled or run
    assert template is None
    assert any(words in e["message"] for e in errors), errors
    first = next(e for e in errors if words in e["message"])
    assert (first["line"], first["column"]) == (line, column)
    assert first["path"] == "prompt.detail"


@pytest.mark.parametrize("source", [
    "{{ bmi|round(1) }} kg/m²",
    "{{ hba1c_mmol_mol|round(1)|replace('.0', '') }} mmol/mol{% if recorded.hba1c_mmol_mol %}"
    " on {{ recorded.hba1c_mmol_mol }}{% endif %}",
    "{% if audit_c is defined and audit_c >= 5 %}AUDIT-C {{ audit_c }}{% else %}-{% endif %}",
    "{% if bmi is defined %}{{ (bmi * 703)|round }}{% endif %} "
    "{{ smoking_status|default('unknown')|upper }}",
])
def test_what_prompts_need_still_works(source: str) -> None:
    template, errors = check(source)
    assert errors == [] and template is not None


def test_text_made_huge_at_render_is_refused_at_save() -> None:
    chain = "|replace('a', 'aaaaaaaaaa')" * 6
    template, errors = check("{{ 'ab'" + chain + " }}")
    assert template is None
    assert "too costly" in errors[0]["message"], errors


def test_a_stored_template_from_before_the_limits_renders_as_its_text() -> None:
    # A version saved before the limits existed: never compiled, never run.
    stalled = rule(detail="Before {% for i in range(100000) %}{% for j in range(100000) %}x"
                          "{% endfor %}{% endfor %}after", version=7)
    started = time.monotonic()
    summary, detail = render_prompt(stalled, {})
    assert time.monotonic() - started < 0.5
    assert (summary, detail) == ("Talk about smoking", "Before xafter")


def test_every_render_is_bounded_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_limits, "RENDER_SECONDS", -1.0)  # already past its deadline
    summary, _ = render_prompt(rule(summary="BMI {{ bmi|round(1) }} today", version=8),
                               {"bmi": 31.26})
    assert summary == "BMI today"  # the placeholders-free text, not a stalled worker


def test_every_render_is_bounded_in_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_limits, "MAX_RENDERED_CHARS", 50)
    _, detail = render_prompt(rule(detail="{{ smoking_status }}" + "y" * 60, version=9),
                              {"smoking_status": "current"})
    assert detail == "y" * 60
