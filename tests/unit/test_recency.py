"""Recency, current conditions and medicines: what a contact may rest on (RULE-PACK.md,
"Recency" and "Current, not historic")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mecc.clinical.catalogue import DMD, SNOMED, load_catalogue
from mecc.clinical.recency import IgnoredFact, apply_recency, contact_facts, evidence
from mecc.clinical.record import ConditionState, current_conditions, medicine_classes
from mecc.clinical.ruleset import build_context

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "config")
ON = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
T2DM, DM_RESOLVED = "44054006", "315051004"
CARER, NOT_A_CARER = "224484003", "506401000000109"
MILD, MODERATE, SEVERE = "925791000000100", "925831000000107", "925861000000102"


def days_before(days: int) -> str:
    return (ON.date() - timedelta(days=days)).isoformat()


def recency(facts: dict[str, Any], dates: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    result = apply_recency(facts, dates, ON, CATALOGUE)
    return result.facts, [i.to_dict() for i in result.ignored]


# ------------------------------------------------------------------------------ recency
def test_the_maximum_ages_are_those_of_the_rule_pack() -> None:
    ages = {n: f.max_age_days for n, f in CATALOGUE.facts.items() if f.max_age_days is not None}
    assert ages == {
        "smoking_status": 365, "audit_c": 365, "audit": 365, "phq2": 365, "gad2": 365,
        "phq9": 365, "gad7": 365, "bmi": 730, "hba1c_mmol_mol": 365, "systolic_bp": 365,
        "diastolic_bp": 365, "activity_minutes_per_week": 365, "gppaq": 365,
        "efi_category": 365, "ucla3": 365}
    for name in ("is_carer", "lives_alone", "financial_concern", "age", "sex"):
        assert CATALOGUE.facts[name].max_age_days is None


def test_a_fact_without_a_date_is_current() -> None:
    assert recency({"hba1c_mmol_mol": 44}, {}) == ({"hba1c_mmol_mol": 44}, [])


@pytest.mark.parametrize(("days", "used"), [(0, True), (364, True), (365, True), (366, False),
                                            (991, False)])
def test_a_value_older_than_its_maximum_age_is_not_used(days: int, used: bool) -> None:
    facts, ignored = recency({"hba1c_mmol_mol": 44}, {"hba1c_mmol_mol": days_before(days)})
    assert ("hba1c_mmol_mol" in facts) is used
    if not used:
        assert ignored == [{"fact": "hba1c_mmol_mol", "recorded_at": days_before(days),
                            "reason": f"older than 365 days at the contact ({days} days)"}]


def test_each_fact_has_its_own_maximum_age() -> None:
    facts, ignored = recency({"bmi": 31.0, "audit_c": 6, "is_carer": True},
                             {"bmi": days_before(700), "audit_c": days_before(700),
                              "is_carer": days_before(5000)})
    assert facts == {"bmi": 31.0, "is_carer": True}
    assert [i["fact"] for i in ignored] == ["audit_c"]


def test_a_date_time_is_judged_by_its_utc_date_and_a_later_value_is_not_used() -> None:
    # 23:30 at -05:00 on 28 Feb 2025 is 1 March 2025 in UTC: exactly 365 days.
    facts, _ = recency({"phq9": 12}, {"phq9": "2025-02-28T23:30:00-05:00"})
    assert facts == {"phq9": 12}
    facts, ignored = recency({"phq9": 12, "gad7": 11},
                             {"phq9": "2026-03-01T10:04:00+00:00",  # clock skew: kept
                              "gad7": "2026-03-01T11:00:00+00:00"})  # after the contact
    assert facts == {"phq9": 12}
    assert ignored == [{"fact": "gad7", "recorded_at": "2026-03-01T11:00:00+00:00",
                        "reason": "recorded after the contact"}]


def test_dates_and_datetimes_are_reported_as_iso_text() -> None:
    result = apply_recency({"bmi": 30.0, "ucla3": 7},
                           {"bmi": date(2025, 1, 1), "ucla3": datetime(2023, 1, 1, tzinfo=UTC)},
                           ON, CATALOGUE)
    assert result.dates == {"bmi": "2025-01-01"}
    assert result.ignored == [IgnoredFact("ucla3", "2023-01-01T00:00:00Z",
                                          "older than 365 days at the contact (1155 days)")]


def test_evidence_is_every_fact_read_that_the_contact_knew_with_its_date() -> None:
    assert evidence({"age", "hba1c_mmol_mol", "bmi"}, {"age": 50, "hba1c_mmol_mol": 44.0},
                    {"hba1c_mmol_mol": "2026-01-03"}) == [
        {"fact": "age", "value": 50, "recorded_at": None},
        {"fact": "hba1c_mmol_mol", "value": 44.0, "recorded_at": "2026-01-03"}]


# ------------------------------------------------------------------------------ current conditions
def coded(code: str, day: str | None = None, system: str = SNOMED) -> dict[str, Any]:
    item: dict[str, Any] = {"system": system, "code": code}
    if day is not None:
        item["onset_date"] = day
    return item


def test_a_diagnosis_is_current_with_its_onset_and_latest_code() -> None:
    states = current_conditions([coded(T2DM, "2020-05-01"), coded("E11.9", "2024-01-02",
                                                                  ICD10_CM)], CATALOGUE)
    assert states == {
        "diabetes_type2": ConditionState(date(2020, 5, 1), date(2024, 1, 2)),
        "diabetes_any": ConditionState(date(2020, 5, 1), date(2024, 1, 2))}


def test_a_later_resolved_code_ends_the_condition() -> None:
    states = current_conditions([coded(T2DM, "2020-05-01"), coded(DM_RESOLVED, "2022-01-01")],
                                CATALOGUE)
    assert states == {}


def test_a_diagnosis_after_the_resolved_code_makes_it_current_again() -> None:
    states = current_conditions([coded(T2DM, "2015-05-01"), coded(DM_RESOLVED, "2018-01-01"),
                                 coded(T2DM, "2024-06-01")], CATALOGUE)
    assert states["diabetes_type2"] == ConditionState(date(2024, 6, 1), date(2024, 6, 1))


def test_a_resolved_code_on_the_same_day_ends_it_too() -> None:
    # QOF: current only when the latest diagnosis is *later* than the latest resolved code.
    assert current_conditions([coded(T2DM, "2022-01-01"), coded(DM_RESOLVED, "2022-01-01")],
                              CATALOGUE) == {}


@pytest.mark.parametrize(("diagnosis", "resolved"), [(None, "2022-01-01"),
                                                     ("2020-01-01", None), (None, None)])
def test_without_dates_the_order_is_unknown_and_the_diagnosis_stands(
    diagnosis: str | None, resolved: str | None,
) -> None:
    states = current_conditions([coded(T2DM, diagnosis), coded(DM_RESOLVED, resolved)],
                                CATALOGUE)
    assert {"diabetes_type2", "diabetes_any"} <= set(states)


def test_a_resolved_code_alone_is_no_condition() -> None:
    assert current_conditions([coded(DM_RESOLVED, "2022-01-01")], CATALOGUE) == {}


def test_a_sender_mapped_group_brings_its_including_group() -> None:
    states = current_conditions([{"group": "diabetes_type1"}], CATALOGUE)
    assert set(states) == {"diabetes_type1", "diabetes_any"}


# ------------------------------------------------------------------------------ implied facts
def facts_at_contact(conditions: list[dict[str, Any]], facts: dict[str, Any] | None = None
                     ) -> tuple[dict[str, Any], dict[str, str], list[dict[str, str]]]:
    result, _ = contact_facts(occurred_at=ON, facts=facts or {}, fact_dates=None,
                              conditions=conditions, catalogue=CATALOGUE)
    return result.facts, result.dates, [i.to_dict() for i in result.ignored]


def test_a_frailty_code_sets_efi_category_dated_by_the_code() -> None:
    assert facts_at_contact([coded(MODERATE, days_before(30))]) == (
        {"efi_category": "moderate"}, {"efi_category": days_before(30)}, [])


def test_the_latest_frailty_code_wins_and_an_old_one_is_too_old() -> None:
    facts, _, _ = facts_at_contact([coded(SEVERE, "2025-06-01"), coded(MILD, "2025-12-01")])
    assert facts == {"efi_category": "mild"}
    assert facts_at_contact([coded(SEVERE, days_before(400))]) == ({}, {}, [
        {"fact": "efi_category", "recorded_at": days_before(400),
         "reason": "older than 365 days at the contact (400 days)"}])
    # Undated codes count as current; on a tie the more severe level wins.
    facts, _, _ = facts_at_contact([coded(SEVERE), coded(MODERATE)])
    assert facts == {"efi_category": "severe"}


def test_a_sent_fact_wins_over_what_a_code_implies() -> None:
    facts, _, _ = facts_at_contact([coded(SEVERE, days_before(3))], {"efi_category": "fit"})
    assert facts == {"efi_category": "fit"}


def test_a_carer_code_sets_is_carer_until_a_later_not_a_carer_code() -> None:
    assert facts_at_contact([coded(CARER, "2020-01-01")])[0] == {"is_carer": True}
    assert facts_at_contact([coded(CARER, "2020-01-01"),
                             coded(NOT_A_CARER, "2023-01-01")])[0] == {}


# ------------------------------------------------------------------------------ medicines
def test_medicines_map_to_their_classes() -> None:
    assert medicine_classes([{"system": DMD, "code": "325278007"},  # metformin 500 mg tablets
                             {"system": SNOMED, "code": "999999999"},
                             {"system": "http://loinc.org", "code": "325278007"}],
                            CATALOGUE) == {"diabetes"}
    ramipril = next(iter(sorted(CATALOGUE.medicines["hypertension"].codes)))
    assert medicine_classes([{"system": SNOMED, "code": ramipril}], CATALOGUE) == {
        "hypertension"}


def test_the_context_carries_current_facts_conditions_medicines_and_dates() -> None:
    ctx = build_context(
        occurred_at=ON, person={"id": "p", "age": 60},
        facts={"hba1c_mmol_mol": 44.0, "bmi": 31.0},
        fact_dates={"hba1c_mmol_mol": days_before(991), "bmi": days_before(20)},
        conditions=[coded(MODERATE, days_before(10))],
        medications=[{"system": DMD, "code": "325278007"}],
        setting="general_practice", contact_type=None, staff_role=None, catalogue=CATALOGUE)
    assert "hba1c_mmol_mol" not in ctx.facts
    assert ctx.facts["bmi"] == 31.0 and ctx.facts["efi_category"] == "moderate"
    assert ctx.fact_dates == {"bmi": days_before(20), "efi_category": days_before(10)}
    assert ctx.medicines == {"diabetes"}
    assert ctx.conditions == {"frailty_moderate": ON.date() - timedelta(days=10)}
