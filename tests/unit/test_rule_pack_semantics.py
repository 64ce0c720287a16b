"""A clinical safety review of the default pack against RULE-PACK.md, rule by rule and note by note:
boundary vignettes, codings nobody here chose (ICD-10-CM, SNOMED CT, dm+d), and the same
contradictions sent as FHIR (a coded diagnosis or a current medicine must never be contradicted).

Written from the design document, not from the YAML: each case says what the pack promises.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mecc.clinical.catalogue import SNOMED, load_catalogue
from mecc.clinical.domain import ContactEvent, PastPrompt, PersonHistory
from mecc.clinical.rulepack import load_rule_pack
from mecc.clinical.ruleset import RuleSet, build_context, evaluate
from mecc.intake.schemas import build_event_schemas
from mecc.interop import fhir
from mecc.rules import compile_expression
from tests.support import ROOT

CATALOGUE = load_catalogue(ROOT / "config")
PACK = load_rule_pack(ROOT / "config" / "rules" / "default.yaml", CATALOGUE)
RULES = RuleSet([(rule, compile_expression(rule.when, CATALOGUE)) for rule in PACK])
EVENTS = build_event_schemas(CATALOGUE)()
ON = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CM = "http://hl7.org/fhir/sid/icd-10-cm"
DMD = "https://dmd.nhs.uk"
METFORMIN = "325278007"  # Metformin 500mg tablets (VMP), medication_antidiabetic_dmd_opensafely
AMLODIPINE = "319283006"  # Amlodipine 5mg tablets (VMP), medication_antihypertensive_dmd_user
DIABETES_RESOLVED, HYPERTENSION_RESOLVED = "315051004", "162659009"  # DMRES_COD, HYPRES_COD

ALC_SPEC, ALC_BRIEF = "alcohol-specialist-referral", "alcohol-brief-advice"
SMOKING, MENTAL = "smoking-very-brief-advice", "mental-wellbeing-talking-therapies"
DPP, BP = "diabetes-prevention-programme", "blood-pressure-check"
WEIGHT_REF, WEIGHT_CHAT = "weight-management-referral", "healthy-weight-conversation"
FRAILTY, LONELY = "frailty-falls-prevention", "loneliness-social-prescribing"
ACTIVITY, DESMOND = "physical-activity-brief-advice", "diabetes-structured-education"
PULM, CARDIAC = "pulmonary-rehabilitation", "cardiac-rehabilitation"
CARERS, MONEY, PLANNING = "carers-support", "money-advice", "care-and-support-planning"


def day(days_before: int) -> str:
    return (ON.date() - timedelta(days=days_before)).isoformat()


def decide(*, age: int | None = 40, birth_date: str | None = None, ethnicity: str | None = None,
           facts: Mapping[str, Any] | None = None, fact_dates: Mapping[str, str] | None = None,
           conditions: Sequence[Mapping[str, Any]] = (),
           medications: Sequence[Mapping[str, Any]] = (), occurred_at: datetime = ON,
           history: Sequence[PastPrompt] = (), cap: int = len(PACK)) -> list[str]:
    """The prompts shown at one contact seen by a practice nurse, in the order shown."""
    person: dict[str, Any] = {"id": "p"}
    if age is not None:
        person["age"] = age
    if birth_date is not None:
        person["birth_date"] = birth_date
    if ethnicity is not None:
        person["ethnicity_group"] = ethnicity
    ctx = build_context(occurred_at=occurred_at, person=person, facts=facts or {},
                        conditions=conditions, setting="general_practice",
                        contact_type="appointment", staff_role="practice_nurse",
                        catalogue=CATALOGUE, fact_dates=fact_dates, medications=medications)
    event = ContactEvent(id="now", occurred_at=occurred_at, organisation="Y02345",
                         setting="general_practice", context=ctx, staff_role="practice_nurse",
                         person_id="p")
    decision = evaluate(event, RULES, PersonHistory(tuple(history)), max_prompts_per_contact=cap)
    return [c.rule.key for c in decision.shown]


def shown(**kwargs: Any) -> set[str]:
    return set(decide(**kwargs))


def code(system: str, value: str, onset: str | None = None) -> dict[str, Any]:
    return {"system": system, "code": value, **({"onset_date": onset} if onset else {})}


HIGHER_RISK = ["south_asian", "chinese", "other_asian", "middle_eastern", "black_african",
               "black_caribbean"]

# (name, decide() arguments, the exact set of prompts shown)
BOUNDARIES: list[tuple[str, dict[str, Any], set[str]]] = [
    # HbA1c 42-47 inclusive.
    ("hba1c-41", dict(facts={"hba1c_mmol_mol": 41}), set()),
    ("hba1c-42", dict(facts={"hba1c_mmol_mol": 42}), {DPP}),
    ("hba1c-47", dict(facts={"hba1c_mmol_mol": 47}), {DPP}),
    ("hba1c-48-is-the-diabetes-range", dict(facts={"hba1c_mmol_mol": 48}), set()),
    ("hba1c-6.5%-converted-47.5", dict(facts={"hba1c_mmol_mol": 47.5}), set()),
    # BMI: 25 / 30, and 23 / 27.5 for a known higher-risk ethnicity only.
    ("bmi-24.9", dict(facts={"bmi": 24.9}), set()),
    ("bmi-25", dict(facts={"bmi": 25}), {WEIGHT_CHAT}),
    ("bmi-29.9", dict(facts={"bmi": 29.9}), {WEIGHT_CHAT}),
    ("bmi-30", dict(facts={"bmi": 30}), {WEIGHT_REF}),
    ("bmi-22.9-south-asian", dict(ethnicity="south_asian", facts={"bmi": 22.9}), set()),
    ("bmi-23-south-asian", dict(ethnicity="south_asian", facts={"bmi": 23}), {WEIGHT_CHAT}),
    ("bmi-27.4-black-african", dict(ethnicity="black_african", facts={"bmi": 27.4}),
     {WEIGHT_CHAT}),
    ("bmi-27.5-black-african", dict(ethnicity="black_african", facts={"bmi": 27.5}),
     {WEIGHT_REF}),
    ("bmi-23-white", dict(ethnicity="white", facts={"bmi": 23}), set()),
    ("bmi-27.5-white", dict(ethnicity="white", facts={"bmi": 27.5}), {WEIGHT_CHAT}),
    ("bmi-23-ethnicity-unknown", dict(facts={"bmi": 23}), set()),
    ("bmi-27.5-ethnicity-unknown", dict(facts={"bmi": 27.5}), {WEIGHT_CHAT}),
    ("bmi-29.9-ethnicity-unknown", dict(facts={"bmi": 29.9}), {WEIGHT_CHAT}),
    ("bmi-730-days-old", dict(facts={"bmi": 31}, fact_dates={"bmi": day(730)}), {WEIGHT_REF}),
    ("bmi-731-days-old", dict(facts={"bmi": 31}, fact_dates={"bmi": day(731)}), set()),
    # Age at occurred_at from the birth date: 12 on the twelfth birthday, 18 on the eighteenth.
    ("smoking-day-before-12th-birthday", dict(age=None, birth_date="2014-03-02",
                                              facts={"smoking_status": "current"}), set()),
    ("smoking-12th-birthday", dict(age=None, birth_date="2014-03-01",
                                   facts={"smoking_status": "current"}), {SMOKING}),
    ("audit-day-before-18th-birthday", dict(age=None, birth_date="2008-03-02",
                                            facts={"audit": 22}), set()),
    ("audit-18th-birthday", dict(age=None, birth_date="2008-03-01", facts={"audit": 22}),
     {ALC_SPEC}),
    ("leap-day-birth-28-feb", dict(age=None, birth_date="2008-02-29", facts={"audit": 22},
                                   occurred_at=datetime(2026, 2, 28, 10, tzinfo=UTC)), set()),
    ("leap-day-birth-1-march", dict(age=None, birth_date="2008-02-29", facts={"audit": 22}),
     {ALC_SPEC}),
    ("smoking-366-days-old", dict(facts={"smoking_status": "current"},
                                  fact_dates={"smoking_status": day(366)}), set()),
    # Blood pressure 140 / 90.
    ("bp-139-89", dict(facts={"systolic_bp": 139, "diastolic_bp": 89}), set()),
    ("bp-140-89", dict(facts={"systolic_bp": 140, "diastolic_bp": 89}), {BP}),
    ("bp-139-90", dict(facts={"systolic_bp": 139, "diastolic_bp": 90}), {BP}),
    # AUDIT 8-19 brief advice, >= 20 specialist; the full AUDIT wins over AUDIT-C.
    ("audit-7-audit-c-10", dict(facts={"audit": 7, "audit_c": 10}), set()),
    ("audit-8-audit-c-10", dict(facts={"audit": 8, "audit_c": 10}), {ALC_BRIEF}),
    ("audit-19-audit-c-10", dict(facts={"audit": 19, "audit_c": 10}), {ALC_BRIEF}),
    ("audit-20-audit-c-10", dict(facts={"audit": 20, "audit_c": 10}), {ALC_SPEC}),
    ("audit-c-4-alone", dict(facts={"audit_c": 4}), set()),
    ("audit-c-5-alone", dict(facts={"audit_c": 5}), {ALC_BRIEF}),
    ("stale-audit-3-fresh-audit-c-8", dict(facts={"audit": 3, "audit_c": 8},
                                           fact_dates={"audit": day(400),
                                                       "audit_c": day(10)}), {ALC_BRIEF}),
    # Mental wellbeing.
    ("phq9-9", dict(facts={"phq9": 9}), set()),
    ("phq9-10", dict(facts={"phq9": 10}), {MENTAL}),
    ("gad7-9", dict(facts={"gad7": 9}), set()),
    ("gad7-10", dict(facts={"gad7": 10}), {MENTAL}),
    ("phq2-2", dict(facts={"phq2": 2}), set()),
    ("phq2-3", dict(facts={"phq2": 3}), {MENTAL}),
    # Loneliness, frailty, activity.
    ("ucla3-5", dict(facts={"ucla3": 5}), set()),
    ("ucla3-6", dict(facts={"ucla3": 6}), {LONELY}),
    ("efi-moderate-64", dict(age=64, facts={"efi_category": "moderate"}), set()),
    ("efi-moderate-65", dict(age=65, facts={"efi_category": "moderate"}), {FRAILTY}),
    ("activity-149", dict(facts={"activity_minutes_per_week": 149}), {ACTIVITY}),
    ("activity-150", dict(facts={"activity_minutes_per_week": 150}), set()),
]

HB = {"hba1c_mmol_mol": 44}
HIGH_BP = {"systolic_bp": 152, "diastolic_bp": 94}
# Codings nobody here chose, with what RULE-PACK.md says they mean for DPP and the BP check.
CODINGS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("cm-e11.9-type-2", dict(facts=HB, conditions=[code(CM, "E11.9")]), set()),
    ("cm-e10.9-type-1", dict(facts=HB, conditions=[code(CM, "E10.9")]), set()),
    ("cm-e13.9-other-diabetes", dict(facts=HB, conditions=[code(CM, "E13.9")]), set()),
    # Gestational diabetes is not diabetes_any (PCD DM_COD and the ICD-10 list leave it out):
    # NICE PH38 names a history of it as a reason *for* the prevention programme.
    ("cm-o24.4-gestational", dict(facts=HB, conditions=[code(CM, "O24.410")]), {DPP}),
    ("snomed-11687002-gestational", dict(facts=HB, conditions=[code(SNOMED, "11687002")]),
     {DPP}),
    # Diabetes in pregnancy of no stated kind may be pre-existing diabetes: no DPP.
    ("cm-o24.9-unspecified-in-pregnancy", dict(facts=HB, conditions=[code(CM, "O24.919")]),
     set()),
    ("snomed-199223000-diabetes-in-pregnancy", dict(facts=HB,
                                                    conditions=[code(SNOMED, "199223000")]),
     set()),
    ("cm-o24.1-pre-existing-type-2", dict(facts=HB, conditions=[code(CM, "O24.119")]), set()),
    # Prediabetes is what DPP is for.
    ("cm-r73.03-prediabetes", dict(facts=HB, conditions=[code(CM, "R73.03")]), {DPP}),
    ("snomed-73211009-diabetes", dict(facts=HB, conditions=[code(SNOMED, "73211009")]), set()),
    ("snomed-44054006-type-2", dict(facts=HB, conditions=[code(SNOMED, "44054006")]), set()),
    ("snomed-46635009-type-1", dict(facts=HB, conditions=[code(SNOMED, "46635009")]), set()),
    ("snomed-4855003-diabetic-retinopathy", dict(facts=HB,
                                                 conditions=[code(SNOMED, "4855003")]), set()),
    ("snomed-421895002-diabetic-pvd", dict(facts=HB, conditions=[code(SNOMED, "421895002")]),
     set()),
    ("diabetes-resolved-after-diagnosis", dict(facts=HB, conditions=[
        code(SNOMED, "44054006", "2015-05-01"), code(SNOMED, DIABETES_RESOLVED, "2019-05-01")]),
     {DPP}),
    ("diabetes-coded-again-after-resolved", dict(facts=HB, conditions=[
        code(SNOMED, "44054006", "2015-05-01"), code(SNOMED, DIABETES_RESOLVED, "2019-05-01"),
        code(CM, "E11.9", "2021-05-01")]), set()),
    ("on-metformin-dmd", dict(facts=HB, medications=[code(DMD, METFORMIN)]), set()),
    ("on-metformin-snomed-system", dict(facts=HB, medications=[code(SNOMED, METFORMIN)]),
     set()),
    ("cm-i10", dict(facts=HIGH_BP, conditions=[code(CM, "I10")]), set()),
    ("cm-i11.9", dict(facts=HIGH_BP, conditions=[code(CM, "I11.9")]), set()),
    ("cm-i15.0-renovascular", dict(facts=HIGH_BP, conditions=[code(CM, "I15.0")]), set()),
    ("cm-i15.9-secondary", dict(facts=HIGH_BP, conditions=[code(CM, "I15.9")]), set()),
    ("cm-o11.3-pre-existing-with-pre-eclampsia", dict(facts=HIGH_BP,
                                                      conditions=[code(CM, "O11.3")]), set()),
    # Gestational hypertension ends with the pregnancy; NICE NG133 wants the BP followed up.
    ("cm-o13.3-gestational-hypertension", dict(facts=HIGH_BP, conditions=[code(CM, "O13.3")]),
     {BP}),
    ("hypertension-resolved-after-diagnosis", dict(facts=HIGH_BP, conditions=[
        code(SNOMED, "38341003", "2012-01-01"), code(SNOMED, HYPERTENSION_RESOLVED,
                                                     "2016-01-01")]), {BP}),
    ("hypertension-resolved-undated", dict(facts=HIGH_BP, conditions=[
        code(SNOMED, "38341003", "2012-01-01"), code(SNOMED, HYPERTENSION_RESOLVED)]), set()),
    ("on-amlodipine", dict(facts=HIGH_BP, medications=[code(DMD, AMLODIPINE)]), set()),
    ("hba1c-stale-366-days", dict(facts=HB, fact_dates={"hba1c_mmol_mol": day(366)}), set()),
    ("bp-stale-366-days", dict(facts=HIGH_BP, fact_dates={"systolic_bp": day(366),
                                                          "diastolic_bp": day(366)}), set()),
]


@pytest.mark.parametrize(("kwargs", "expected"), [pytest.param(k, e, id=n)
                                                  for n, k, e in BOUNDARIES + CODINGS])
def test_vignette(kwargs: dict[str, Any], expected: set[str]) -> None:
    assert shown(**kwargs) == expected


def test_the_lists_hold_the_codes_the_vignettes_use() -> None:
    """The vignettes' medicine codes are in the published dm+d lists (so they test the lists)."""
    assert CATALOGUE.medicine_classes_for_code(DMD, METFORMIN) == ("diabetes",)
    assert CATALOGUE.medicine_classes_for_code(DMD, AMLODIPINE) == ("hypertension",)


@pytest.mark.parametrize("ethnicity", HIGHER_RISK)
def test_every_higher_risk_group_lowers_the_thresholds(ethnicity: str) -> None:
    assert shown(ethnicity=ethnicity, facts={"bmi": 23}) == {WEIGHT_CHAT}
    assert shown(ethnicity=ethnicity, facts={"bmi": 27.5}) == {WEIGHT_REF}


# --- the per-contact cap, one prompt per topic, cooldowns and declines ------------------------

def test_cap_keeps_the_highest_priorities_and_breaks_ties_by_key() -> None:
    everything = dict(facts={"is_carer": True, "financial_concern": True},
                      conditions=[code(SNOMED, "44054006", day(30)), code(SNOMED, "13645005")])
    # Structured education and pulmonary rehabilitation share priority 72: the key decides.
    assert decide(cap=1, **everything) == [DESMOND]
    assert decide(cap=2, **everything) == [DESMOND, PULM]
    assert decide(cap=3, **everything) == [DESMOND, PULM, CARERS]


def test_same_topic_shows_one_prompt() -> None:
    """COPD and a recent MI: both rehabilitation prompts match, one shows (equal priority: the
    key decides, cardiac before pulmonary). Two long-term conditions also raise care planning."""
    assert shown(conditions=[code(SNOMED, "13645005"), code(SNOMED, "22298006", day(20))]) \
        == {CARDIAC, PLANNING}


def past(rule: str, topic: str, days_before: int, status: str) -> PastPrompt:
    return PastPrompt(rule_key=rule, topic=topic, contact_at=ON - timedelta(days=days_before),
                      status=status, event_id=f"e-{uuid.uuid4()}")


@pytest.mark.parametrize(("days_before", "expected"), [(89, set()), (90, {SMOKING})])
def test_cooldown_runs_from_the_contacts_occurred_at(days_before: int,
                                                     expected: set[str]) -> None:
    history = [past(SMOKING, "smoking", days_before, "conversation_had")]
    assert shown(facts={"smoking_status": "current"}, history=history) == expected


@pytest.mark.parametrize(("days_before", "expected"), [(179, set()), (180, {WEIGHT_REF})])
def test_a_decline_silences_the_topic_for_its_decline_days(days_before: int,
                                                           expected: set[str]) -> None:
    history = [past(WEIGHT_CHAT, "healthy_weight", days_before, "declined")]
    assert shown(facts={"bmi": 33}, history=history) == expected


# --- the same contradictions sent as FHIR ------------------------------------------------------

LOINC = "http://loinc.org"
FHIR_ON = "2026-11-20T09:00:00Z"


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    """A transaction Bundle: a Patient, the contact's Encounter, an HbA1c of 44 mmol/mol and a
    blood pressure of 152/94 ten days before, and `resources`."""
    patient = f"urn:uuid:{uuid.uuid4()}"
    base: list[dict[str, Any]] = [
        {"resourceType": "Patient", "birthDate": "1970-05-01", "gender": "female"},
        {"resourceType": "Encounter", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                   "code": "AMB"},
         "period": {"start": FHIR_ON, "end": "2026-11-20T09:20:00Z"}},
        {"resourceType": "Observation", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "59261-8"}]},
         "effectiveDateTime": "2026-11-10", "valueQuantity": {"value": 44, "unit": "mmol/mol"}},
        {"resourceType": "Observation", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
         "effectiveDateTime": "2026-11-10",
         "component": [
             {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
              "valueQuantity": {"value": 152, "unit": "mm[Hg]"}},
             {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
              "valueQuantity": {"value": 94, "unit": "mm[Hg]"}}]},
    ]
    entries = []
    for res in base + [copy.deepcopy(r) for r in resources]:
        url = patient if res["resourceType"] == "Patient" else f"urn:uuid:{uuid.uuid4()}"
        if res["resourceType"] not in ("Patient", "Medication"):
            res["subject"] = {"reference": patient}
        entries.append({"fullUrl": url, "resource": res,
                        "request": {"method": "POST", "url": res["resourceType"]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def fhir_matched(*resources: dict[str, Any]) -> set[str]:
    result = fhir.map_bundle(bundle(*resources), catalogue=CATALOGUE,
                             defaults=fhir.Defaults(source="test-gp", organisation="Y02345"))
    data = EVENTS.load(result.event)
    ctx = build_context(occurred_at=data["occurred_at"], person=data["person"],
                        facts=data["facts"], conditions=data["conditions"],
                        setting=data["setting"], contact_type=data.get("contact_type"),
                        staff_role="practice_nurse", catalogue=CATALOGUE,
                        fact_dates=data.get("fact_dates"),
                        medications=data.get("medications") or ())
    event = ContactEvent(id="e", occurred_at=data["occurred_at"], organisation="Y02345",
                         setting=data["setting"], context=ctx, staff_role="practice_nurse",
                         person_id=data["person"]["id"])
    decision = evaluate(event, RULES, PersonHistory(), max_prompts_per_contact=len(PACK))
    return {m.rule.key for m in decision.matches} & {DPP, BP}


def condition(system: str, value: str, status: str | None = "active",
              **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Condition",
                           "code": {"coding": [{"system": system, "code": value}]}, **extra}
    if status is not None:
        res["clinicalStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": status}]}
    return res


def request(status: str, medicine: str = METFORMIN, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "MedicationRequest", "status": status,
                           "intent": "order", "authoredOn": "2026-06-01", **extra}
    if "medicationReference" not in extra:
        res["medicationCodeableConcept"] = {"coding": [{"system": DMD, "code": medicine}]}
    return res


CONTAINED_METFORMIN = {"contained": [{"resourceType": "Medication", "id": "med1", "code": {
    "coding": [{"system": SNOMED, "code": METFORMIN, "display": "Metformin 500mg tablets"}]}}],
    "medicationReference": {"reference": "#med1"}}

FHIR_CASES: list[tuple[str, list[dict[str, Any]], set[str]]] = [
    ("nothing-coded", [], {DPP, BP}),
    ("cm-e11.9", [condition(CM, "E11.9")], {BP}),
    ("cm-i10", [condition(CM, "I10")], {DPP}),
    ("cm-o24.4-gestational", [condition(CM, "O24.410")], {DPP, BP}),
    ("diabetes-then-resolved-no-status", [
        condition(SNOMED, "44054006", None, onsetDateTime="2015-01-01"),
        condition(SNOMED, DIABETES_RESOLVED, None, onsetDateTime="2019-01-01")], {DPP, BP}),
    ("hypertension-clinical-status-resolved", [condition(SNOMED, "38341003", "resolved")],
     {DPP, BP}),
    ("metformin-active", [request("active")], {BP}),
    ("metformin-stopped", [request("stopped")], {DPP, BP}),
    # A paused medicine is still a treatment: the person is being treated for diabetes.
    ("metformin-on-hold", [request("on-hold")], {BP}),
    # The medicine as a contained Medication, as many prescribing systems send it.
    ("metformin-contained", [request("active", **CONTAINED_METFORMIN)], {BP}),
    ("amlodipine-statement", [{"resourceType": "MedicationStatement", "status": "active",
                               "medicationCodeableConcept": {"coding": [
                                   {"system": SNOMED, "code": AMLODIPINE}]}}], {DPP}),
]


@pytest.mark.parametrize(("resources", "expected"), [pytest.param(r, e, id=n)
                                                     for n, r, e in FHIR_CASES])
def test_fhir_vignette(resources: list[dict[str, Any]], expected: set[str]) -> None:
    assert fhir_matched(*resources) == expected
