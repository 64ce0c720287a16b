"""A prompt that contradicts a diagnosis is worse than no prompt (RULE-PACK.md, "Absence is only
as good as the code list"). For every code of diabetes_any, in every code system, and every
diabetes medicine, the Diabetes Prevention Programme rule never matches; the same for hypertension
and the blood-pressure check. Exhaustive over the value sets, then Hypothesis over whole contacts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mecc.clinical.catalogue import DMD, ICD10_SYSTEMS, SNOMED, load_catalogue
from mecc.clinical.domain import ContactEvent, PersonHistory
from mecc.clinical.rulepack import load_rule_pack
from mecc.clinical.ruleset import RuleSet, build_context, evaluate
from mecc.rules import compile_expression

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "config")
PACK = {rule.key: rule for rule in load_rule_pack(ROOT / "config" / "rules" / "default.yaml",
                                                  CATALOGUE)}
RULES = RuleSet([(rule, compile_expression(rule.when, CATALOGUE)) for rule in PACK.values()])
ON = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DPP, BP = "diabetes-prevention-programme", "blood-pressure-check"
# What makes each rule match when nothing contradicts it.
TRIGGER = {DPP: {"hba1c_mmol_mol": 44.0}, BP: {"systolic_bp": 160, "diastolic_bp": 95}}
EXCLUDED_BY = {DPP: ("diabetes_any", "diabetes"), BP: ("hypertension", "hypertension")}


def matched(key: str, *, facts: Mapping[str, Any], conditions: Sequence[Mapping[str, Any]] = (),
            medications: Sequence[Mapping[str, Any]] = (), age: int = 50,
            fact_dates: Mapping[str, str] | None = None) -> bool:
    ctx = build_context(occurred_at=ON, person={"id": "p", "age": age}, facts=facts,
                        conditions=conditions, setting="general_practice",
                        contact_type="appointment", staff_role="practice_nurse",
                        catalogue=CATALOGUE, fact_dates=fact_dates, medications=medications)
    event = ContactEvent(id="e", occurred_at=ON, organisation="Y02345",
                         setting="general_practice", context=ctx, staff_role="practice_nurse",
                         person_id="p")
    decision = evaluate(event, RULES, PersonHistory(), max_prompts_per_contact=len(PACK))
    return key in {m.rule.key for m in decision.matches}


def icd10_codes(entry: str) -> Iterator[str]:
    """Codes a record could carry under a value-set entry: the entry itself, and a child."""
    yield entry
    yield f"{entry}.9" if "." not in entry else f"{entry}1"


@cache
def coded(group: str) -> list[dict[str, str]]:
    spec = CATALOGUE.groups[group]
    items = [{"system": SNOMED, "code": code} for code in sorted(spec.snomed)]
    items += [{"system": system, "code": code} for entry in sorted(spec.icd10)
              for code in icd10_codes(entry) for system in ICD10_SYSTEMS]
    return items


@cache
def medicines(medicine_class: str) -> list[dict[str, str]]:
    codes = sorted(CATALOGUE.medicines[medicine_class].codes)
    return [{"system": system, "code": code} for code in codes for system in (DMD, SNOMED)]


@pytest.mark.parametrize("key", [DPP, BP])
def test_the_rule_matches_when_nothing_contradicts_it(key: str) -> None:
    # Otherwise the tests below would pass for the wrong reason.
    assert matched(key, facts=TRIGGER[key])


@pytest.mark.parametrize("key", [DPP, BP])
def test_no_code_of_the_group_in_any_system_ever_matches(key: str) -> None:
    group, _ = EXCLUDED_BY[key]
    items = coded(group)
    assert len(items) > 100
    wrong = [item for item in items if matched(key, facts=TRIGGER[key], conditions=[item])]
    assert wrong == []


@pytest.mark.parametrize("key", [DPP, BP])
def test_no_medicine_of_the_class_ever_matches(key: str) -> None:
    _, medicine_class = EXCLUDED_BY[key]
    items = medicines(medicine_class)
    assert len(items) > 1000
    wrong = [item for item in items if matched(key, facts=TRIGGER[key], medications=[item])]
    assert wrong == []


def test_the_groups_hold_the_codes_real_records_carry() -> None:
    # The walk with other people's data (issue 10): these slipped through before.
    dm = {(item["system"], item["code"]) for item in coded("diabetes_any")}
    assert (SNOMED, "73211009") in dm  # Diabetes mellitus
    assert ("http://hl7.org/fhir/sid/icd-10-cm", "E11.9") in dm
    htn = {(item["system"], item["code"]) for item in coded("hypertension")}
    assert ("http://hl7.org/fhir/sid/icd-10-cm", "I10") in htn


# --- whole contacts -----------------------------------------------------------------------------

OTHER_CODES = st.sampled_from(["13645005", "195967001", "35489007", "414915002", "999999999",
                               "J45.9", "F32.1", "O24.4", "R73.03"])


def condition(code: str, day: str | None) -> dict[str, str]:
    system = SNOMED if code.isdigit() else "http://hl7.org/fhir/sid/icd-10-cm"
    return {"system": system, "code": code, **({"onset_date": day} if day else {})}


@st.composite
def contacts(draw: st.DrawFn, key: str) -> dict[str, Any]:
    """A contact the rule would match, plus a diagnosis code or a medicine that forbids it."""
    group, medicine_class = EXCLUDED_BY[key]
    facts = dict(TRIGGER[key])
    if key == DPP:
        facts["hba1c_mmol_mol"] = draw(st.floats(42, 47))
    else:
        facts["systolic_bp"] = draw(st.integers(140, 300))
        facts["diastolic_bp"] = draw(st.integers(20, 200))
    facts["bmi"] = draw(st.floats(15, 60))
    days = st.one_of(st.none(), st.integers(0, 7000).map(
        lambda n: (ON.date() - timedelta(days=n)).isoformat()))
    conditions = [condition(draw(OTHER_CODES), draw(days))
                  for _ in range(draw(st.integers(0, 3)))]
    medications = []
    if draw(st.booleans()):
        item = draw(st.sampled_from(coded(group)))
        conditions.insert(draw(st.integers(0, len(conditions))),
                          {**item, **({"onset_date": d} if (d := draw(days)) else {})})
    else:
        medications.append(draw(st.sampled_from(medicines(medicine_class))))
    recorded = {fact: (ON.date() - timedelta(days=draw(st.integers(0, 365)))).isoformat()
                for fact in facts if draw(st.booleans())}
    return {"facts": facts, "conditions": conditions, "medications": medications,
            "age": draw(st.integers(18, 110)), "fact_dates": recorded}


@settings(max_examples=300, deadline=None)
@given(contacts(DPP))
def test_a_person_with_diabetes_is_never_offered_the_prevention_programme(
    contact: dict[str, Any],
) -> None:
    assert not matched(DPP, **contact)


@settings(max_examples=300, deadline=None)
@given(contacts(BP))
def test_a_person_with_hypertension_is_never_sent_for_a_blood_pressure_check(
    contact: dict[str, Any],
) -> None:
    assert not matched(BP, **contact)
