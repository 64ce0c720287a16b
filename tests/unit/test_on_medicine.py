"""on_medicine('class') in the rule language: checked against the catalogue's medicine classes
like has_condition() against its groups, and never unknown (the medication list is the record)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from mecc.clinical.catalogue import load_catalogue
from mecc.clinical.domain import EvalContext
from mecc.rules import check_expression, compile_expression

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "config")
ON = date(2026, 3, 1)


def evaluate(source: str, medicines: frozenset[str] = frozenset(),
             facts: dict[str, object] | None = None) -> bool | None:
    ctx = EvalContext(facts=facts or {}, conditions={}, on=ON, medicines=medicines)
    return compile_expression(source, CATALOGUE).evaluate(ctx)


def test_on_medicine_is_true_or_false_never_unknown() -> None:
    assert evaluate("on_medicine('diabetes')", frozenset({"diabetes"})) is True
    assert evaluate("on_medicine('diabetes')", frozenset({"hypertension"})) is False
    assert evaluate("!on_medicine('diabetes')") is True
    assert evaluate("!on_medicine('diabetes')", frozenset({"diabetes"})) is False


def test_on_medicine_combines_with_facts() -> None:
    source = "hba1c_mmol_mol >= 42 && !on_medicine('diabetes')"
    assert evaluate(source, facts={"hba1c_mmol_mol": 44.0}) is True
    assert evaluate(source, frozenset({"diabetes"}), {"hba1c_mmol_mol": 44.0}) is False
    assert evaluate(source) is None  # the HbA1c is unknown
    assert compile_expression(source, CATALOGUE).required_facts == {"hba1c_mmol_mol"}


@pytest.mark.parametrize(("source", "message", "hint"), [
    ("on_medicine('diabetic')", "unknown medicine class 'diabetic'", "did you mean 'diabetes'?"),
    ("on_medicine(diabetes)", "on_medicine() takes a medicine class name in quotes",
     "write on_medicine('diabetes')"),
    ("on_medicine()", "on_medicine() takes 1 argument, got 0", "write on_medicine('class')"),
    ("on_medicine('diabetes') >= 1", "'>=' compares numbers", None),
    ("on_medicines('diabetes')", "unknown function 'on_medicines'", "did you mean on_medicine?"),
])
def test_on_medicine_is_type_checked(source: str, message: str, hint: str | None) -> None:
    [diagnostic] = check_expression(source, CATALOGUE)
    assert message in diagnostic.message
    if hint is not None:
        assert diagnostic.hint == hint
