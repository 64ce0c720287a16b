"""Clinical vignettes for the default rule pack, written from RULE-PACK.md (not from the YAML).

Each vignette is one contact: a person, facts and conditions, evaluated through the real pack,
the real rule compiler and the real engine. Unless a vignette is about the per-contact cap, the
cap is lifted so that the answer is exactly the set of prompts the pack raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mecc.clinical.catalogue import SNOMED, load_catalogue
from mecc.clinical.domain import ContactEvent, PastPrompt, PersonHistory, Preferences
from mecc.clinical.rulepack import load_rule_pack
from mecc.clinical.ruleset import Decision, RuleSet, build_context, evaluate
from mecc.clinical.templates import render_prompt
from mecc.rules import compile_expression

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "config")
PACK = load_rule_pack(ROOT / "config" / "rules" / "default.yaml", CATALOGUE)
COMPILED = [(rule, compile_expression(rule.when, CATALOGUE)) for rule in PACK]
RULES = RuleSet(COMPILED)
BY_KEY = {rule.key: rule for rule in PACK}

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
DMD = "https://dmd.nhs.uk"
METFORMIN = {"system": DMD, "code": "325278007"}  # Metformin 500mg tablets (VMP)
INSULIN = {"system": SNOMED, "code": "3280711000001103"}  # NovoRapid 10ml vials (AMP)
DIABETES_RESOLVED, HYPERTENSION_RESOLVED = "315051004", "162659009"
ON = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
HIGHER_RISK = ("south_asian", "chinese", "other_asian", "middle_eastern", "black_african",
               "black_caribbean")
ALL_NURSING_ROLES = ("gp", "practice_nurse", "healthcare_assistant", "pharmacist",
                     "community_nurse")

SMOKING = "smoking-very-brief-advice"
ALC_SPEC = "alcohol-specialist-referral"
ALC_BRIEF = "alcohol-brief-advice"
MENTAL = "mental-wellbeing-talking-therapies"
DPP = "diabetes-prevention-programme"
WEIGHT_REF = "weight-management-referral"
WEIGHT_CHAT = "healthy-weight-conversation"
BP = "blood-pressure-check"
DESMOND = "diabetes-structured-education"
PULM = "pulmonary-rehabilitation"
CARDIAC = "cardiac-rehabilitation"
FRAILTY = "frailty-falls-prevention"
CARERS = "carers-support"
PLANNING = "care-and-support-planning"
LONELY = "loneliness-social-prescribing"
MONEY = "money-advice"
ACTIVITY = "physical-activity-brief-advice"


def days_ago(days: int) -> str:
    return (ON.date() - timedelta(days=days)).isoformat()


def decide(
    *,
    age: int | None = 40,
    birth_date: str | None = None,
    ethnicity: str | None = None,
    facts: Mapping[str, Any] | None = None,
    conditions: Sequence[Mapping[str, Any]] = (),
    staff_role: str | None = "practice_nurse",
    setting: str = "general_practice",
    occurred_at: datetime = ON,
    history: Sequence[PastPrompt] = (),
    declined: Sequence[str] = (),
    cap: int = len(PACK),
    fact_dates: Mapping[str, str] | None = None,
    medications: Sequence[Mapping[str, str]] = (),
) -> Decision:
    person: dict[str, Any] = {"id": "p-1"}
    if age is not None:
        person["age"] = age
    if birth_date is not None:
        person["birth_date"] = birth_date
    if ethnicity is not None:
        person["ethnicity_group"] = ethnicity
    ctx = build_context(
        occurred_at=occurred_at, person=person, facts=facts or {}, conditions=conditions,
        setting=setting, contact_type="appointment", staff_role=staff_role, catalogue=CATALOGUE,
        fact_dates=fact_dates, medications=medications,
    )
    # The index must never change the answer: compare with evaluating every rule.
    naive = {rule.key for rule, expr in COMPILED if expr.evaluate(ctx) is True}
    event = ContactEvent(
        id="ev-now", occurred_at=occurred_at, organisation="Y02345", setting=setting,
        context=ctx, staff_role=staff_role, person_id="p-1",
        preferences=Preferences(declined_topics=frozenset(declined)),
    )
    decision = evaluate(event, RULES, PersonHistory(tuple(history)),
                        max_prompts_per_contact=cap, explain=True)
    assert {m.rule.key for m in decision.matches} == naive
    for candidate in decision.shown:
        summary, _detail = render_prompt(candidate.rule, ctx.facts)
        assert 0 < len(summary) <= 140, (candidate.rule.key, summary)
    return decision


def shown(**kwargs: Any) -> set[str]:
    return {c.rule.key for c in decide(**kwargs).shown}


# --- the pack itself, row by row -----------------------------------------------------------------

# key: (topic, kind, priority, cooldown_days, suggested service types)
TABLE = {
    ALC_SPEC: ("alcohol", "self_management_referral", 95, 180, ("alcohol_support",)),
    SMOKING: ("smoking", "lifestyle_conversation", 90, 90, ("stop_smoking",)),
    MENTAL: ("mental_wellbeing", "self_management_referral", 88, 90, ("talking_therapies",)),
    DPP: ("diabetes_prevention", "self_management_referral", 85, 365, ("diabetes_prevention",)),
    WEIGHT_REF: ("healthy_weight", "self_management_referral", 80, 180, ("weight_management",)),
    ALC_BRIEF: ("alcohol", "lifestyle_conversation", 78, 180, ("alcohol_support",)),
    BP: ("blood_pressure", "lifestyle_conversation", 75, 90, ()),
    DESMOND: ("self_management", "self_management_referral", 72, 365,
              ("structured_education",)),
    PULM: ("rehabilitation", "self_management_referral", 72, 365, ("pulmonary_rehab",)),
    CARDIAC: ("rehabilitation", "self_management_referral", 72, 365, ("cardiac_rehab",)),
    FRAILTY: ("frailty_falls", "social_prescribing", 70, 180, ("falls_prevention",)),
    CARERS: ("carers", "social_prescribing", 65, 365, ("carers_support",)),
    PLANNING: ("care_planning", "self_management_referral", 60, 365, ("health_coaching",)),
    LONELY: ("social_connection", "social_prescribing", 58, 180, ("social_prescribing",)),
    MONEY: ("money_advice", "social_prescribing", 55, 180, ("money_advice",)),
    ACTIVITY: ("physical_activity", "lifestyle_conversation", 50, 180, ("physical_activity",)),
    WEIGHT_CHAT: ("healthy_weight", "lifestyle_conversation", 45, 180, ("weight_management",)),
}


def test_the_pack_has_the_seventeen_rules():
    assert sorted(BY_KEY) == sorted(TABLE)
    assert len(PACK) == 17


@pytest.mark.parametrize("key", sorted(TABLE))
def test_rule_row(key):
    rule = BY_KEY[key]
    topic, kind, priority, cooldown, suggests = TABLE[key]
    assert (rule.topic, rule.kind, rule.priority, rule.cooldown_days) == (
        topic, kind, priority, cooldown)
    assert tuple(rule.suggestions) == suggests
    assert rule.status == "active"
    assert rule.sources, "every rule lists its sources"
    assert rule.settings == frozenset()
    assert rule.staff_roles == (frozenset(ALL_NURSING_ROLES) if key == BP else frozenset())


def test_nothing_is_raised_without_facts_or_conditions():
    assert shown() == set()
    assert shown(age=None) == set()
    assert shown(age=90, ethnicity="south_asian", staff_role=None) == set()


# --- vignettes: one contact each, the exact set of prompts it raises -----------------------------

def c(group: str, onset: str | None = None) -> dict[str, Any]:
    return {"group": group, **({"onset_date": onset} if onset else {})}


def snomed(code: str, onset: str | None = None) -> dict[str, Any]:
    return {"system": SNOMED, "code": code, **({"onset_date": onset} if onset else {})}


def icd10(code: str, onset: str | None = None) -> dict[str, Any]:
    return {"system": ICD10, "code": code, **({"onset_date": onset} if onset else {})}


VIGNETTES: list[tuple[str, dict[str, Any], set[str]]] = [
    # Smoking: age >= 12 and current.
    ("smoking-age-11", dict(age=11, facts={"smoking_status": "current"}), set()),
    ("smoking-age-12", dict(age=12, facts={"smoking_status": "current"}), {SMOKING}),
    ("smoking-age-80", dict(age=80, facts={"smoking_status": "current"}), {SMOKING}),
    ("smoking-ex", dict(facts={"smoking_status": "ex"}), set()),
    ("smoking-never", dict(facts={"smoking_status": "never"}), set()),
    ("smoking-unknown-status", dict(facts={"smoking_status": "unknown"}), set()),
    ("smoking-age-unknown", dict(age=None, facts={"smoking_status": "current"}), set()),
    ("smoking-birthday-eve", dict(age=None, birth_date="2014-03-02",
                                  facts={"smoking_status": "current"}), set()),
    ("smoking-twelfth-birthday", dict(age=None, birth_date="2014-03-01",
                                      facts={"smoking_status": "current"}), {SMOKING}),
    # Alcohol: full AUDIT 8-19 brief advice, >= 20 specialist; AUDIT-C >= 5 only without AUDIT.
    ("audit-7", dict(facts={"audit": 7}), set()),
    ("audit-8", dict(facts={"audit": 8}), {ALC_BRIEF}),
    ("audit-15", dict(facts={"audit": 15}), {ALC_BRIEF}),
    ("audit-19", dict(facts={"audit": 19}), {ALC_BRIEF}),
    ("audit-20", dict(facts={"audit": 20}), {ALC_SPEC}),
    ("audit-40", dict(facts={"audit": 40}), {ALC_SPEC}),
    ("audit-25-age-17", dict(age=17, facts={"audit": 25}), set()),
    ("audit-20-age-18", dict(age=18, facts={"audit": 20}), {ALC_SPEC}),
    ("audit-c-4", dict(facts={"audit_c": 4}), set()),
    ("audit-c-5", dict(facts={"audit_c": 5}), {ALC_BRIEF}),
    ("audit-c-12", dict(facts={"audit_c": 12}), {ALC_BRIEF}),
    ("audit-c-8-age-17", dict(age=17, facts={"audit_c": 8}), set()),
    ("audit-c-5-age-unknown", dict(age=None, facts={"audit_c": 5}), set()),
    ("audit-c-high-audit-0", dict(facts={"audit_c": 12, "audit": 0}), set()),
    ("audit-c-high-audit-7", dict(facts={"audit_c": 9, "audit": 7}), set()),
    ("audit-c-low-audit-8", dict(facts={"audit_c": 3, "audit": 8}), {ALC_BRIEF}),
    ("audit-c-high-audit-20", dict(facts={"audit_c": 12, "audit": 20}), {ALC_SPEC}),
    # Mental wellbeing: age >= 18 and (PHQ-2 >= 3 or GAD-2 >= 3).
    ("phq2-2", dict(facts={"phq2": 2}), set()),
    ("phq2-3", dict(facts={"phq2": 3}), {MENTAL}),
    ("gad2-2", dict(facts={"gad2": 2}), set()),
    ("gad2-3", dict(facts={"gad2": 3}), {MENTAL}),
    ("phq2-2-gad2-2", dict(facts={"phq2": 2, "gad2": 2}), set()),
    ("phq2-0-gad2-6", dict(facts={"phq2": 0, "gad2": 6}), {MENTAL}),
    ("phq2-6-age-17", dict(age=17, facts={"phq2": 6}), set()),
    # ... or PHQ-9 >= 10 or GAD-7 >= 10.
    ("phq9-9", dict(facts={"phq9": 9}), set()),
    ("phq9-10", dict(facts={"phq9": 10}), {MENTAL}),
    ("gad7-9", dict(facts={"gad7": 9}), set()),
    ("gad7-10", dict(facts={"gad7": 10}), {MENTAL}),
    ("phq2-2-gad7-15", dict(facts={"phq2": 2, "gad7": 15}), {MENTAL}),
    ("phq9-27-age-17", dict(age=17, facts={"phq9": 27}), set()),
    ("phq9-14-400-days-old", dict(facts={"phq9": 14}, fact_dates={"phq9": days_ago(400)}),
     set()),
    ("phq9-14-300-days-old", dict(facts={"phq9": 14}, fact_dates={"phq9": days_ago(300)}),
     {MENTAL}),
    # Diabetes prevention: age >= 18, HbA1c 42-47 inclusive, no diabetes.
    ("hba1c-41", dict(facts={"hba1c_mmol_mol": 41}), set()),
    ("hba1c-41.9", dict(facts={"hba1c_mmol_mol": 41.9}), set()),
    ("hba1c-42", dict(facts={"hba1c_mmol_mol": 42}), {DPP}),
    ("hba1c-47", dict(facts={"hba1c_mmol_mol": 47}), {DPP}),
    ("hba1c-48", dict(facts={"hba1c_mmol_mol": 48}), set()),
    ("hba1c-44-type2", dict(facts={"hba1c_mmol_mol": 44},
                            conditions=[c("diabetes_type2", days_ago(900))]), set()),
    ("hba1c-44-type1", dict(facts={"hba1c_mmol_mol": 44}, conditions=[snomed("46635009")]),
     set()),
    ("hba1c-44-e11-code", dict(facts={"hba1c_mmol_mol": 44}, conditions=[icd10("E11.9")]),
     set()),
    ("hba1c-44-other-condition", dict(facts={"hba1c_mmol_mol": 44},
                                      conditions=[c("asthma")]), {DPP}),
    ("hba1c-44-age-17", dict(age=17, facts={"hba1c_mmol_mol": 44}), set()),
    # ... and no diabetes of any kind: never contradict a diagnosis (issue 10's misses).
    ("hba1c-44-diabetes-type-not-stated", dict(facts={"hba1c_mmol_mol": 44},
                                               conditions=[snomed("73211009")]), set()),
    ("hba1c-44-diabetic-retinopathy", dict(facts={"hba1c_mmol_mol": 44},
                                           conditions=[snomed("4855003")]), set()),
    ("hba1c-44-e11.9-icd10-cm", dict(facts={"hba1c_mmol_mol": 44},
                                     conditions=[{"system": ICD10_CM, "code": "E11.9"}]),
     set()),
    ("hba1c-44-e14-unspecified", dict(facts={"hba1c_mmol_mol": 44},
                                      conditions=[icd10("E14.9")]), set()),
    ("hba1c-44-on-metformin", dict(facts={"hba1c_mmol_mol": 44}, medications=[METFORMIN]),
     set()),
    ("hba1c-44-on-insulin", dict(facts={"hba1c_mmol_mol": 44}, medications=[INSULIN]), set()),
    ("hba1c-44-diabetes-resolved-later", dict(
        facts={"hba1c_mmol_mol": 44},
        conditions=[snomed("44054006", "2015-01-01"), snomed(DIABETES_RESOLVED, "2019-01-01")]),
     {DPP}),
    ("hba1c-44-diabetes-after-resolved", dict(
        facts={"hba1c_mmol_mol": 44},
        conditions=[snomed(DIABETES_RESOLVED, "2019-01-01"), snomed("44054006", "2022-01-01")]),
     set()),
    ("hba1c-44-resolved-undated", dict(
        facts={"hba1c_mmol_mol": 44},
        conditions=[snomed("44054006"), snomed(DIABETES_RESOLVED, "2019-01-01")]), set()),
    ("hba1c-44-gestational-diabetes", dict(facts={"hba1c_mmol_mol": 44},
                                           conditions=[icd10("O24.4")]), {DPP}),
    ("hba1c-44-991-days-old", dict(facts={"hba1c_mmol_mol": 44},
                                   fact_dates={"hba1c_mmol_mol": days_ago(991)}), set()),
    ("hba1c-44-365-days-old", dict(facts={"hba1c_mmol_mol": 44},
                                   fact_dates={"hba1c_mmol_mol": days_ago(365)}), {DPP}),
    # Blood pressure: >= 140 systolic or >= 90 diastolic, no hypertension.
    ("bp-139-89", dict(facts={"systolic_bp": 139, "diastolic_bp": 89}), set()),
    ("bp-140-80", dict(facts={"systolic_bp": 140, "diastolic_bp": 80}), {BP}),
    ("bp-120-90", dict(facts={"systolic_bp": 120, "diastolic_bp": 90}), {BP}),
    ("bp-systolic-only-139", dict(facts={"systolic_bp": 139}), set()),
    ("bp-systolic-only-140", dict(facts={"systolic_bp": 140}), {BP}),
    ("bp-diastolic-only-90", dict(facts={"diastolic_bp": 90}), {BP}),
    ("bp-hypertensive", dict(facts={"systolic_bp": 170, "diastolic_bp": 100},
                             conditions=[snomed("38341003")]), set()),
    ("bp-hypertensive-i10", dict(facts={"systolic_bp": 150}, conditions=[icd10("I10")]), set()),
    ("bp-age-17", dict(age=17, facts={"systolic_bp": 150}), set()),
    ("bp-hypertensive-i10-icd10-cm", dict(facts={"systolic_bp": 150},
                                          conditions=[{"system": ICD10_CM, "code": "I10"}]),
     set()),
    ("bp-on-antihypertensive", dict(
        facts={"systolic_bp": 150},
        medications=[{"system": DMD, "code": min(CATALOGUE.medicines["hypertension"].codes)}]),
     set()),
    ("bp-hypertension-resolved-later", dict(
        facts={"systolic_bp": 150},
        conditions=[snomed("38341003", "2012-01-01"), snomed(HYPERTENSION_RESOLVED,
                                                             "2016-01-01")]), {BP}),
    ("bp-reading-400-days-old", dict(facts={"systolic_bp": 150},
                                     fact_dates={"systolic_bp": days_ago(400)}), set()),
    # Structured education: type 2 diabetes diagnosed within the last 365 days.
    ("t2-onset-365", dict(conditions=[snomed("44054006", days_ago(365))]), {DESMOND}),
    ("t2-onset-366", dict(conditions=[snomed("44054006", days_ago(366))]), set()),
    ("t2-onset-today", dict(conditions=[icd10("E11.9", days_ago(0))]), {DESMOND}),
    ("t2-onset-unknown", dict(conditions=[c("diabetes_type2")]), set()),
    ("t2-earliest-onset-wins", dict(conditions=[snomed("44054006", days_ago(30)),
                                                icd10("E11", days_ago(800))]), set()),
    ("t1-recent", dict(conditions=[c("diabetes_type1", days_ago(10))]), set()),
    # Pulmonary rehabilitation: has COPD, whatever the age or onset.
    ("copd-snomed", dict(conditions=[snomed("13645005")]), {PULM}),
    ("copd-j44.9", dict(age=None, conditions=[icd10("J44.9", days_ago(4000))]), {PULM}),
    ("copd-group", dict(conditions=[c("copd", days_ago(1))]), {PULM}),
    ("asthma-not-copd", dict(conditions=[c("asthma")]), set()),
    # Cardiac rehabilitation: heart failure or CHD diagnosed within the last 365 days.
    ("hf-onset-365", dict(conditions=[c("heart_failure", days_ago(365))]), {CARDIAC}),
    ("hf-onset-366", dict(conditions=[c("heart_failure", days_ago(366))]), set()),
    ("mi-onset-100", dict(conditions=[snomed("22298006", days_ago(100))]), {CARDIAC}),
    ("chd-onset-365", dict(conditions=[snomed("53741008", days_ago(365))]), {CARDIAC}),
    ("chd-onset-366", dict(conditions=[snomed("53741008", days_ago(366))]), set()),
    ("hf-i50-recent", dict(conditions=[icd10("I50.0", days_ago(20))]), {CARDIAC}),
    ("chd-onset-unknown", dict(conditions=[c("coronary_heart_disease")]), set()),
    # Frailty: age >= 65 and eFI moderate or severe.
    ("efi-severe-64", dict(age=64, facts={"efi_category": "severe"}), set()),
    ("efi-moderate-65", dict(age=65, facts={"efi_category": "moderate"}), {FRAILTY}),
    ("efi-severe-65", dict(age=65, facts={"efi_category": "severe"}), {FRAILTY}),
    ("efi-mild-80", dict(age=80, facts={"efi_category": "mild"}), set()),
    ("efi-fit-80", dict(age=80, facts={"efi_category": "fit"}), set()),
    ("efi-severe-age-unknown", dict(age=None, facts={"efi_category": "severe"}), set()),
    ("efi-65th-birthday", dict(age=None, birth_date="1961-03-01",
                               facts={"efi_category": "moderate"}), {FRAILTY}),
    ("efi-day-before-65", dict(age=None, birth_date="1961-03-02",
                               facts={"efi_category": "moderate"}), set()),
    # A frailty code sets efi_category when the fact is not sent.
    ("moderate-frailty-code", dict(age=70, conditions=[snomed("925831000000107", days_ago(60))]),
     {FRAILTY}),
    ("severe-frailty-code-undated", dict(age=70, conditions=[snomed("925861000000102")]),
     {FRAILTY}),
    ("mild-frailty-code", dict(age=70, conditions=[snomed("925791000000100", days_ago(60))]),
     set()),
    ("severe-frailty-code-400-days-old", dict(
        age=70, conditions=[snomed("925861000000102", days_ago(400))]), set()),
    ("frailty-code-but-fit-sent", dict(age=70, facts={"efi_category": "fit"},
                                       conditions=[snomed("925861000000102")]), set()),
    # Carers, money advice, loneliness: no age limit.
    ("carer", dict(facts={"is_carer": True}), {CARERS}),
    ("not-carer", dict(facts={"is_carer": False}), set()),
    ("young-carer", dict(age=14, facts={"is_carer": True}), {CARERS}),
    ("carer-code", dict(conditions=[snomed("224484003", "2024-01-01")]), {CARERS}),
    ("carer-code-then-not-a-carer", dict(conditions=[snomed("224484003", "2020-01-01"),
                                                     snomed("506401000000109", "2024-01-01")]),
     set()),
    ("money", dict(facts={"financial_concern": True}), {MONEY}),
    ("no-money-concern", dict(facts={"financial_concern": False}), set()),
    ("ucla-5", dict(facts={"ucla3": 5}), set()),
    ("ucla-6", dict(facts={"ucla3": 6}), {LONELY}),
    ("ucla-9", dict(facts={"ucla3": 9}), {LONELY}),
    ("lives-alone-alone-is-not-enough", dict(facts={"lives_alone": True}), set()),
    # Care and support planning: two or more distinct LTC groups.
    ("one-group-coded-twice", dict(conditions=[snomed("44054006"), icd10("E11.9")]), set()),
    ("two-groups", dict(conditions=[snomed("44054006"), snomed("38341003")]), {PLANNING}),
    ("two-groups-sent-as-groups", dict(conditions=[c("asthma"), c("depression")]),
     {PLANNING}),
    ("two-groups-icd10", dict(conditions=[icd10("J45.9"), icd10("F32.1")]), {PLANNING}),
    ("unknown-code-is-not-a-group", dict(conditions=[c("asthma"), snomed("999999999")]),
     set()),
    # Physical activity: age >= 18 and (GPPAQ inactive / moderately inactive, or < 150 min).
    ("gppaq-active", dict(facts={"gppaq": "active"}), set()),
    ("gppaq-moderately-active", dict(facts={"gppaq": "moderately_active"}), set()),
    ("gppaq-moderately-inactive", dict(facts={"gppaq": "moderately_inactive"}), {ACTIVITY}),
    ("gppaq-inactive", dict(facts={"gppaq": "inactive"}), {ACTIVITY}),
    ("minutes-149", dict(facts={"activity_minutes_per_week": 149}), {ACTIVITY}),
    ("minutes-150", dict(facts={"activity_minutes_per_week": 150}), set()),
    ("minutes-0", dict(facts={"activity_minutes_per_week": 0}), {ACTIVITY}),
    ("active-but-few-minutes", dict(facts={"gppaq": "active", "activity_minutes_per_week": 60}),
     {ACTIVITY}),
    ("inactive-age-17", dict(age=17, facts={"gppaq": "inactive"}), set()),
]


# BMI: referral >= 30 (>= 27.5 higher-risk ethnicity); conversation >= 25 (>= 23) below that.
def _bmi_cases() -> list[tuple[str, dict[str, Any], set[str]]]:
    general: list[tuple[float, set[str]]] = [
        (24.9, set()), (25, {WEIGHT_CHAT}), (29.9, {WEIGHT_CHAT}), (30, {WEIGHT_REF}),
        (22.9, set()), (23, set()), (27.4, {WEIGHT_CHAT}), (27.5, {WEIGHT_CHAT}),
        (45, {WEIGHT_REF}),
    ]
    higher: list[tuple[float, set[str]]] = [
        (22.9, set()), (23, {WEIGHT_CHAT}), (27.4, {WEIGHT_CHAT}), (27.5, {WEIGHT_REF}),
        (30, {WEIGHT_REF}),
    ]
    cases: list[tuple[str, dict[str, Any], set[str]]] = []
    for ethnicity in (None, "white", "other", "mixed"):
        for bmi, expected in general:
            cases.append((f"bmi-{bmi}-{ethnicity}", dict(ethnicity=ethnicity,
                                                          facts={"bmi": bmi}), expected))
    for ethnicity in HIGHER_RISK:
        for bmi, expected in higher:
            cases.append((f"bmi-{bmi}-{ethnicity}", dict(ethnicity=ethnicity,
                                                          facts={"bmi": bmi}), expected))
    cases.append(("bmi-35-age-17", dict(age=17, facts={"bmi": 35}), set()))
    cases.append(("bmi-28-age-unknown", dict(age=None, ethnicity="chinese",
                                             facts={"bmi": 28}), set()))
    return cases


@pytest.mark.parametrize(("kwargs", "expected"),
                         [pytest.param(k, e, id=i) for i, k, e in VIGNETTES + _bmi_cases()])
def test_vignette(kwargs, expected):
    decision = decide(**kwargs)
    assert {c.rule.key for c in decision.shown} == expected
    assert decision.deferred == []


# --- staff roles and settings --------------------------------------------------------------------

@pytest.mark.parametrize("role", ALL_NURSING_ROLES)
def test_blood_pressure_for_clinical_roles(role):
    assert shown(staff_role=role, facts={"systolic_bp": 160}) == {BP}


@pytest.mark.parametrize("role", ["receptionist", "care_worker", "social_worker",
                                  "allied_health_professional", "other", None])
def test_blood_pressure_not_for_other_roles(role):
    decision = decide(staff_role=role, facts={"systolic_bp": 160})
    assert decision.shown == []
    assert [(s.rule_key, s.reason_code) for s in decision.suppressed] == [(BP, "staff_role")]


def test_other_rules_show_for_any_role_and_setting():
    facts = {"smoking_status": "current", "is_carer": True}
    assert shown(staff_role="receptionist", setting="dental", facts=facts) == {SMOKING, CARERS}
    assert shown(staff_role=None, setting="voluntary_sector", facts=facts) == {SMOKING, CARERS}


# --- several prompts at one contact --------------------------------------------------------------

def test_copd_and_recent_mi_show_one_rehabilitation_prompt():
    decision = decide(conditions=[c("copd"), c("coronary_heart_disease", days_ago(40))])
    # Same topic, same priority (72): the tie goes to the lower key.
    assert {x.rule.key for x in decision.shown} == {CARDIAC, PLANNING}
    assert [(s.rule_key, s.reason_code) for s in decision.suppressed] == [(PULM, "same_topic")]


def test_default_cap_keeps_the_three_highest_priorities():
    decision = decide(
        facts={"smoking_status": "current", "audit": 24, "phq2": 5, "bmi": 33,
               "is_carer": True},
        cap=3,
    )
    assert [x.rule.key for x in decision.shown] == [ALC_SPEC, SMOKING, MENTAL]
    assert [x.rule.key for x in decision.deferred] == [WEIGHT_REF, CARERS]
    assert decision.suppressed == []


def test_cap_tie_at_priority_72_is_broken_by_key():
    decision = decide(
        conditions=[c("diabetes_type2", days_ago(10)), c("copd"),
                    c("heart_failure", days_ago(10))],
        facts={"is_carer": True}, cap=2,
    )
    # desmond and cardiac tie at 72 (pulmonary loses its topic to cardiac).
    assert [x.rule.key for x in decision.shown] == [CARDIAC, DESMOND]
    assert [x.rule.key for x in decision.deferred] == [CARERS, PLANNING]


def test_a_full_consultation():
    decision = decide(
        age=None, birth_date="1971-04-02", ethnicity="south_asian",
        facts={"smoking_status": "current", "bmi": 28.4, "audit_c": 6, "phq2": 1},
        conditions=[snomed("44054006", "2026-01-30")], cap=3,
        declined=["alcohol"],
    )
    assert [x.rule.key for x in decision.shown] == [SMOKING, WEIGHT_REF, DESMOND]
    assert [(s.rule_key, s.reason_code) for s in decision.suppressed] == [
        (ALC_BRIEF, "declined_topic")]


# --- suppression with the pack's own windows -----------------------------------------------------

def test_smoking_cooldown_of_90_days_from_the_conversation():
    history = [PastPrompt(SMOKING, "smoking", datetime(2026, 1, 10, 9, tzinfo=UTC),
                          "conversation_had", "ev-jan")]
    facts = {"smoking_status": "current"}
    before = decide(facts=facts, history=history,
                    occurred_at=datetime(2026, 4, 9, 17, tzinfo=UTC))
    assert [(s.rule_key, s.reason_code) for s in before.suppressed] == [(SMOKING, "cooldown")]
    again = decide(facts=facts, history=history, occurred_at=datetime(2026, 4, 10, 8, tzinfo=UTC))
    assert {x.rule.key for x in again.shown} == {SMOKING}


def test_declined_weight_conversation_silences_the_referral_for_180_days():
    history = [PastPrompt(WEIGHT_CHAT, "healthy_weight", datetime(2026, 1, 10, 9, tzinfo=UTC),
                          "declined", "ev-jan")]
    facts = {"bmi": 31}
    assert shown(facts=facts, history=history,
                 occurred_at=datetime(2026, 7, 8, 12, tzinfo=UTC)) == set()
    assert shown(facts=facts, history=history,
                 occurred_at=datetime(2026, 7, 9, 12, tzinfo=UTC)) == {WEIGHT_REF}
    assert date(2026, 1, 10) + timedelta(days=180) == date(2026, 7, 9)


def test_explanations_serialise_for_the_dry_run():
    data = decide(facts={"smoking_status": "current"}).to_dict()
    assert data["matches"][0]["rule"]["key"] == SMOKING
    assert data["matches"][0]["explanation"]


def test_a_prompt_says_what_it_rests_on():
    decision = decide(facts={"hba1c_mmol_mol": 44.0, "bmi": 24.0},
                      fact_dates={"hba1c_mmol_mol": "2026-01-03", "bmi": "2025-06-01"})
    assert {c.rule.key for c in decision.shown} == {DPP}
    assert decision.evidence[DPP] == [
        {"fact": "age", "value": 40, "recorded_at": None},
        {"fact": "hba1c_mmol_mol", "value": 44.0, "recorded_at": "2026-01-03"}]
    dates = {e["fact"]: e["recorded_at"] for e in decision.evidence[DPP] if e["recorded_at"]}
    summary, _ = render_prompt(BY_KEY[DPP], {"hba1c_mmol_mol": 44.0}, dates)
    assert "HbA1c 44 mmol/mol on 3 January 2026 means" in summary
    summary, _ = render_prompt(BY_KEY[DPP], {"hba1c_mmol_mol": 44.5})
    assert "HbA1c 44.5 mmol/mol means" in summary
