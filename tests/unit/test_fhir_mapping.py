"""FHIR R4 -> contact event: the mapping on the public US Core examples and UK Core-style variants.

The US Core files in shared/fixtures/us-core are never edited; variants are built from them here.
"""

from __future__ import annotations

import copy
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mecc.clinical.catalogue import load_catalogue
from mecc.interop import fhir
from mecc.interop.fhir import body, scores, smoking, units
from mecc.interop.fhir import observation as observations
from mecc.platform.errors import ValidationFailed

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("MECC_SHARED_FIXTURES", ROOT.parent / "shared" / "fixtures"))
CATALOGUE = load_catalogue(ROOT / "config")
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
DEFAULTS = fhir.Defaults(source="test-gp", organisation="Y02345")
RECENT = "2024-03-01T09:30:00+00:00"


def us_core(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "us-core" / name).read_text())


def encounter(**changes: Any) -> dict[str, Any]:
    """The US Core encounter, dated after every example observation (they date from 1999-2023)."""
    enc = us_core("encounter-example-1.json")
    enc["period"] = {"start": RECENT}
    enc.update(changes)
    return enc


def bundle(*resources: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind,
            "entry": [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}", "resource": r}
                      for i, r in enumerate(resources)]}


def fresh(resource: dict[str, Any], when: str = "2024-01-10") -> dict[str, Any]:
    """An example Observation re-dated to before the contact: the examples date from 1999-2023,
    and a value older than its fact's maximum age at the contact is not used."""
    for name in ("effectiveDateTime", "effectivePeriod", "effectiveInstant"):
        resource.pop(name, None)
    resource["effectiveDateTime"] = when
    return resource


def us_core_bundle() -> dict[str, Any]:
    return bundle(us_core("patient-example.json"), encounter(),
                  fresh(us_core("bmi.json")), fresh(us_core("blood-pressure.json")),
                  fresh(us_core("bp-data-absent.json")), fresh(us_core("some-day-smoker.json")),
                  fresh(us_core("Observation-AUDIT-C-item-example-75626-2.json")),
                  us_core("condition-encounter-diagnosis-example1.json"))


def run(body: dict[str, Any], defaults: fhir.Defaults = DEFAULTS) -> fhir.MappingResult:
    return fhir.map_bundle(body, catalogue=CATALOGUE, defaults=defaults)


def observation(ident: str, code: tuple[str, str], *, when: str = "2024-01-10", **value: Any
                ) -> dict[str, Any]:
    obs: dict[str, Any] = {"resourceType": "Observation", "id": ident, "status": "final",
                           "code": {"coding": [{"system": code[0], "code": code[1]}]},
                           "subject": {"reference": "Patient/example"},
                           "effectiveDateTime": when}
    obs.update(value)
    return obs


def quantity(value: Any, unit: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit is not None:
        q.update({"unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
    return q


def with_observations(*extra: dict[str, Any]) -> fhir.MappingResult:
    return run(bundle(us_core("patient-example.json"), encounter(), *extra))


def ignored_reasons(result: fhir.MappingResult, ref: str) -> list[str]:
    return [i["reason"] for i in result.ignored if i["from"] == ref]


def errors_of(body: Any, defaults: fhir.Defaults = DEFAULTS) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as caught:
        run(body, defaults)
    return caught.value.errors


# ------------------------------------------------------------------------------ US Core examples
def test_the_us_core_examples_map_to_one_contact_event() -> None:
    result = run(us_core_bundle())
    event = result.event
    assert event["event_id"] == "example-1"  # no identifier: the Encounter's id
    assert event["source"] == "test-gp"
    assert event["occurred_at"] == RECENT
    assert event["organisation"] == "Y02345"  # no ODS serviceProvider: the key's
    assert (event["setting"], event["contact_type"]) == ("other", "appointment")  # AMB
    assert event["person"] == {"id": "example", "birth_date": "1987-02-20"}  # no gender sent
    assert event["facts"] == {"bmi": 16.2, "systolic_bp": 109, "diastolic_bp": 44,
                              "smoking_status": "current", "audit_c": 0}
    assert event["conditions"] == [{"system": SNOMED, "code": "39065001",
                                    "display": "Burn of ear"}]


def test_mapped_names_the_resource_each_fact_and_condition_came_from() -> None:
    result = run(us_core_bundle())
    facts = {m["fact"]: m for m in result.mapped if "fact" in m}
    assert {k: (v["value"], v["from"]) for k, v in facts.items()} == {
        "bmi": (16.2, "Observation/bmi"),
        "systolic_bp": (109, "Observation/bp-data-absent"),  # same time: the later entry
        "diastolic_bp": (44, "Observation/blood-pressure"),  # the other one's is absent
        "smoking_status": ("current", "Observation/some-day-smoker"),
        "audit_c": (0, "Observation/AUDIT-C-item-example-75626-2")}
    assert facts["diastolic_bp"]["element"] == "component[1].valueQuantity.value"
    conditions = [m for m in result.mapped if "condition" in m]
    assert conditions == [{"condition": {"system": SNOMED, "code": "39065001",
                                         "display": "Burn of ear"}, "groups": [],
                           "from": "Condition/encounter-diagnosis-example1",
                           "element": "code.coding[0]"}]


def test_ignored_says_what_was_not_used_and_why() -> None:
    result = run(us_core_bundle())
    assert any("dataAbsentReason: unknown" in r
               for r in ignored_reasons(result, "Observation/bp-data-absent"))
    absent = next(i for i in result.ignored if i["from"] == "Observation/bp-data-absent"
                  and "dataAbsentReason" in i["reason"])
    assert absent["element"] == "component[1].dataAbsentReason"
    # ICD-10-CM is read (by category) since issue 10; the SNOMED CT coding came first.
    assert any("Another coding" in r
               for r in ignored_reasons(result, "Condition/encounter-diagnosis-example1"))
    assert any("99211" in r for r in ignored_reasons(result, "Encounter/example-1"))
    assert any("74048" in r for r in ignored_reasons(result, "Patient/example"))


def test_values_older_than_their_facts_maximum_age_are_ignored_with_their_date() -> None:
    result = run(bundle(us_core("patient-example.json"), encounter(), us_core("bmi.json"),
                        us_core("some-day-smoker.json"),
                        us_core("Observation-AUDIT-C-item-example-75626-2.json")))
    assert result.event["facts"] == {"audit_c": 0}  # 2023-08-14: within 365 days
    assert result.event["fact_dates"] == {"audit_c": "2023-08-14T20:40:49.675000+00:00"}
    stale = {i["fact"]: i for i in result.ignored if "recorded_at" in i}
    assert stale["bmi"]["recorded_at"] == "1999-07-02"
    assert "older than 730 days" in stale["bmi"]["reason"]
    assert stale["smoking_status"]["recorded_at"] == "2016-03-18T05:27:04+00:00"
    assert stale["smoking_status"]["from"] == "Observation/some-day-smoker"


def test_an_observation_after_the_contact_is_not_a_fact_of_it() -> None:
    late = encounter(period={"start": "2010-01-01T09:00:00+00:00"})
    result = run(bundle(us_core("patient-example.json"), late, us_core("some-day-smoker.json")))
    assert "smoking_status" not in result.event["facts"]
    assert "It is dated after the contact." in ignored_reasons(result,
                                                               "Observation/some-day-smoker")


# ------------------------------------------------------------------------------ the Encounter
def test_event_id_prefers_the_encounters_first_identifier() -> None:
    enc = encounter(identifier=[{"system": "https://gp.example/enc", "value": "enc-42"},
                                {"value": "other"}])
    result = run(bundle(us_core("patient-example.json"), enc))
    assert result.event["event_id"] == "enc-42"


def test_organisation_from_the_service_providers_ods_code() -> None:
    enc = encounter(serviceProvider={"identifier": {
        "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A81001"}})
    result = run(bundle(us_core("patient-example.json"), enc))
    assert result.event["organisation"] == "A81001"


@pytest.mark.parametrize(("klass", "types", "expected"), [
    ("AMB", [], ("other", "appointment")),
    ("HH", [], ("community_nursing", "home_visit")),
    ("VR", [], ("other", "video")),
    ("VR", [{"coding": [{"system": SNOMED, "code": "185317003"}]}], ("other", "telephone")),
    ("IMP", [], ("hospital_inpatient", "other")),
    ("EMER", [], ("emergency_department", "other")),
    ("FLD", [], ("other", "other")),
    ("AMB", [{"coding": [{"system": fhir.SETTING_SYSTEM, "code": "general_practice"},
                         {"system": fhir.CONTACT_TYPE_SYSTEM, "code": "review"}]}],
     ("general_practice", "review")),
])
def test_setting_and_contact_type_from_class_and_type(klass: str, types: list[Any],
                                                       expected: tuple[str, str]) -> None:
    enc = encounter(**{"class": {"system": fhir.V3_ACT_CODE, "code": klass}, "type": types})
    result = run(bundle(us_core("patient-example.json"), enc))
    assert (result.event["setting"], result.event["contact_type"]) == expected


def test_staff_from_the_first_participant() -> None:
    enc = encounter(participant=[
        {"type": [{"coding": [{"system": SNOMED, "code": "62247001"}]}],
         "individual": {"reference": "Practitioner/st-991"}},
        {"individual": {"reference": "Practitioner/someone-else"}}])
    result = run(bundle(us_core("patient-example.json"), enc))
    assert result.event["staff"] == {"id": "st-991", "role": "gp"}


def test_staff_by_identifier_and_our_role_code() -> None:
    enc = encounter(participant=[{
        "type": [{"coding": [{"system": fhir.STAFF_ROLE_SYSTEM, "code": "practice_nurse"}]}],
        "individual": {"identifier": {"value": "N123"}}}])
    result = run(bundle(us_core("patient-example.json"), enc))
    assert result.event["staff"] == {"id": "N123", "role": "practice_nurse"}


def test_a_participant_type_that_is_no_role_is_reported() -> None:
    enc = encounter(participant=[{
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                        "v3-ParticipationType", "code": "PPRF"}]}],
        "individual": {"reference": "Practitioner/1"}}])
    result = run(bundle(us_core("patient-example.json"), enc))
    assert result.event["staff"] == {"id": "1"}
    assert any("staff role" in r for r in ignored_reasons(result, "Encounter/example-1"))


# ------------------------------------------------------------------------------ the Patient
def uk_patient(**changes: Any) -> dict[str, Any]:
    patient = {
        "resourceType": "Patient", "id": "example",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
        "gender": "female", "birthDate": "1971-04-02",
        "extension": [{"url": fhir.ETHNIC_CATEGORY_URL, "valueCodeableConcept": {"coding": [
            {"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
             "code": "H", "display": "Indian or British Indian"}]}}],
        "address": [{"use": "old", "postalCode": "LS1 4AP"},
                    {"use": "home", "postalCode": "m14 5ab"}],
    }
    patient.update(changes)
    return patient


def test_uk_core_patient_maps_nhs_number_sex_ethnicity_and_district() -> None:
    result = run(bundle(uk_patient(), encounter()))
    assert result.event["person"] == {
        "id": "example", "nhs_number": "9434765919", "birth_date": "1971-04-02",
        "sex": "female", "ethnicity_group": "south_asian", "postcode_district": "M14"}
    nhs = next(m for m in result.mapped if m.get("field") == "person.nhs_number")
    assert "value" not in nhs  # never echoed


@pytest.mark.parametrize(("code", "group"), [
    ("A", "white"), ("B", "white"), ("C", "white"), ("D", "mixed"), ("G", "mixed"),
    ("H", "south_asian"), ("J", "south_asian"), ("K", "south_asian"), ("L", "other_asian"),
    ("M", "black_caribbean"), ("N", "black_african"), ("P", "black_other"),
    ("R", "chinese"), ("S", "other"), ("Z", "not_stated")])
def test_ethnic_category_table(code: str, group: str) -> None:
    patient = uk_patient()
    patient["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = code
    assert run(bundle(patient, encounter())).event["person"]["ethnicity_group"] == group


def test_an_unknown_ethnic_category_is_ignored_with_a_reason() -> None:
    patient = uk_patient()
    patient["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = "99"
    result = run(bundle(patient, encounter()))
    assert "ethnicity_group" not in result.event["person"]
    assert any("ethnic category" in r for r in ignored_reasons(result, "Patient/example"))


def test_a_district_alone_is_accepted_and_a_partial_birth_date_is_not() -> None:
    patient = uk_patient(address=[{"postalCode": "EC1A"}], birthDate="1971")
    result = run(bundle(patient, encounter()))
    assert result.event["person"]["postcode_district"] == "EC1A"
    assert "birth_date" not in result.event["person"]
    assert any("partial" in r for r in ignored_reasons(result, "Patient/example"))


# ------------------------------------------------------------------------------ Observations
def test_uk_core_snomed_codes_are_read_from_any_coding() -> None:
    bmi = observation("bmi-1", ("https://local.example/codes", "BMI"),
                      valueQuantity=quantity(31.2, "kg/m2"))
    bmi["code"]["coding"].append({"system": SNOMED, "code": "60621009"})
    bp = observation("bp-1", (SNOMED, "75367002"), component=[
        {"code": {"coding": [{"system": SNOMED, "code": "271649006"}]},
         "valueQuantity": quantity(152, "mm[Hg]")},
        {"code": {"coding": [{"system": SNOMED, "code": "271650006"}]},
         "valueQuantity": quantity(95, "mm[Hg]")}])
    smoker = observation("smoke-1", (SNOMED, "77176002"))  # the finding in code, no value
    result = with_observations(bmi, bp, smoker)
    assert result.event["facts"] == {"bmi": 31.2, "systolic_bp": 152, "diastolic_bp": 95,
                                     "smoking_status": "current"}
    assert {"fact": "bmi", "value": 31.2, "from": "Observation/bmi-1"}.items() <= next(
        m for m in result.mapped if m.get("fact") == "bmi").items()


@pytest.mark.parametrize(("code", "status"), [
    ("77176002", "current"), ("449868002", "current"), ("428041000124106", "current"),
    ("65568007", "current"), ("428071000124103", "current"), ("428061000124105", "current"),
    ("8517006", "ex"), ("266919005", "never")])
def test_smoking_status_values(code: str, status: str) -> None:
    smoker = fresh(us_core("some-day-smoker.json"))
    smoker["valueCodeableConcept"]["coding"][0]["code"] = code
    assert with_observations(smoker).event["facts"]["smoking_status"] == status


def test_an_unknown_smoking_value_is_ignored() -> None:
    smoker = us_core("some-day-smoker.json")
    smoker["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": "123456789"}]}
    result = with_observations(smoker)
    assert "smoking_status" not in result.event["facts"]
    assert ignored_reasons(result, "Observation/some-day-smoker")


def test_the_latest_effective_value_per_fact_wins() -> None:
    old = observation("bmi-old", (LOINC, "39156-5"), when="2023-01-01",
                      valueQuantity=quantity(35.0, "kg/m2"))
    new = observation("bmi-new", (LOINC, "39156-5"), valueQuantity=quantity(29.5, "kg/m2"))
    del new["effectiveDateTime"]
    new["effectivePeriod"] = {"start": "2024-02-01T10:00:00Z"}
    issued = observation("bmi-issued", (LOINC, "39156-5"), valueQuantity=quantity(40, "kg/m2"))
    del issued["effectiveDateTime"]
    issued["issued"] = "2023-06-01T10:00:00Z"
    result = with_observations(new, old, issued)
    assert result.event["facts"]["bmi"] == 29.5
    assert any("later" in r for r in ignored_reasons(result, "Observation/bmi-old"))
    assert any("later" in r for r in ignored_reasons(result, "Observation/bmi-issued"))


def test_hba1c_percent_is_converted_to_mmol_per_mol() -> None:
    percent = observation("a1c-pct", (LOINC, "4548-4"), valueQuantity=quantity(6.5, "%"))
    result = with_observations(percent)
    assert result.event["facts"]["hba1c_mmol_mol"] == 47.5  # (6.5 - 2.15) * 10.929 = 47.54
    entry = next(m for m in result.mapped if m.get("fact") == "hba1c_mmol_mol")
    assert "converted from 6.5 %" in entry["note"]
    ifcc = observation("a1c", (LOINC, "59261-8"), when="2024-02-01",
                       valueQuantity=quantity(44, "mmol/mol"))
    assert with_observations(percent, ifcc).event["facts"]["hba1c_mmol_mol"] == 44.0


def test_an_unconvertible_unit_is_ignored_and_kpa_is_converted() -> None:
    bmi = observation("bmi-lb", (LOINC, "39156-5"), valueQuantity=quantity(700, "lb/in2"))
    sys = observation("sys", (LOINC, "8480-6"), valueQuantity=quantity(20, "kPa"))
    result = with_observations(bmi, sys)
    assert "bmi" not in result.event["facts"]
    assert any("lb/in2" in r for r in ignored_reasons(result, "Observation/bmi-lb"))
    assert result.event["facts"]["systolic_bp"] == 150  # 20 kPa = 150.0 mmHg


def test_a_comparator_is_not_a_measurement() -> None:
    q = quantity(10, "mmol/mol") | {"comparator": "<"}
    result = with_observations(observation("a1c", (LOINC, "59261-8"), valueQuantity=q))
    assert "hba1c_mmol_mol" not in result.event["facts"]
    assert any("<10" in r for r in ignored_reasons(result, "Observation/a1c"))


def item(ident: str, code: str, answer: str, when: str = "2024-01-10") -> dict[str, Any]:
    return observation(ident, (LOINC, code), when=when, valueCodeableConcept={
        "coding": [{"system": LOINC, "code": answer}]})


def test_phq2_is_the_sum_of_its_two_items_scored_by_answer_code() -> None:
    result = with_observations(item("q1", "44250-9", "LA6570-1"),
                               item("q2", "44255-8", "LA6569-3"))
    assert result.event["facts"]["phq2"] == 3
    entry = next(m for m in result.mapped if m.get("fact") == "phq2")
    assert entry["from"] == "Observation/q1 + Observation/q2"


def test_a_phq2_total_wins_over_items_of_the_same_time_and_panels_carry_totals() -> None:
    total = observation("phq2", (LOINC, "55758-7"), valueInteger=1)
    result = with_observations(item("q1", "44250-9", "LA6571-9"),
                               item("q2", "44255-8", "LA6571-9"), total)
    assert result.event["facts"]["phq2"] == 1
    panel = observation("panel", (LOINC, "55757-9"), when="2024-02-01",
                        valueQuantity=quantity(4, "{score}"))
    assert with_observations(total, panel).event["facts"]["phq2"] == 4


def test_gad2_from_the_first_two_items_of_a_gad7_panel() -> None:
    panel = observation("gad7", (LOINC, "69737-5"), component=[
        {"code": {"coding": [{"system": LOINC, "code": "69725-0"}]}, "valueInteger": 2},
        {"code": {"coding": [{"system": LOINC, "code": "68509-9"}]},
         "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6571-9"}]}},
        {"code": {"coding": [{"system": LOINC, "code": "69733-4"}]}, "valueInteger": 3}])
    result = with_observations(panel)
    assert result.event["facts"]["gad2"] == 5
    assert any("69733-4" in r for r in ignored_reasons(result, "Observation/gad7"))


def test_one_item_alone_or_items_of_different_times_give_no_score() -> None:
    result = with_observations(item("q1", "44250-9", "LA6570-1", "2024-01-01"),
                               item("q2", "44255-8", "LA6569-3", "2024-01-02"))
    assert "phq2" not in result.event["facts"]
    assert any("same administration" in r for r in ignored_reasons(result, "Observation/q1"))


def test_audit_and_our_own_fact_codes() -> None:
    audit = observation("audit", (LOINC, "75624-7"), valueQuantity=quantity(21, "{score}"))
    carer = observation("carer", (fhir.FACT_SYSTEM, "is_carer"), valueBoolean=True)
    efi = observation("efi", (fhir.FACT_SYSTEM, "efi_category"), valueString="moderate")
    facts = with_observations(audit, carer, efi).event["facts"]
    assert facts == {"audit": 21, "is_carer": True, "efi_category": "moderate"}


def test_unusable_observations_are_ignored_with_a_reason() -> None:
    wrong = observation("err", (LOINC, "39156-5"), status="entered-in-error",
                        valueQuantity=quantity(30, "kg/m2"))
    other = observation("other", (LOINC, "39156-5"), subject={"reference": "Patient/else"},
                        valueQuantity=quantity(30, "kg/m2"))
    unknown = observation("hr", (LOINC, "8867-4"), valueQuantity=quantity(60, "/min"))
    absent = observation("abs", (LOINC, "39156-5"), dataAbsentReason={
        "coding": [{"code": "asked-declined"}]})
    result = with_observations(wrong, other, unknown, absent)
    assert "bmi" not in result.event["facts"]
    assert ignored_reasons(result, "Observation/err") == [
        "status 'entered-in-error' is not a usable result."]
    assert "Patient/else" in ignored_reasons(result, "Observation/other")[0]
    assert "8867-4" in ignored_reasons(result, "Observation/hr")[0]
    assert "asked-declined" in ignored_reasons(result, "Observation/abs")[0]


def test_other_resource_types_are_reported_as_unused() -> None:
    practitioner = {"resourceType": "Practitioner", "id": "p1"}
    result = with_observations(practitioner)
    assert ignored_reasons(result, "Practitioner/p1") == [
        "Practitioner resources are not used by the mapping."]


# ------------------------------------------------------------------------------ Conditions
def condition(ident: str, system: str, code: str, **changes: Any) -> dict[str, Any]:
    cond = {"resourceType": "Condition", "id": ident,
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": "Patient/example"}}
    cond.update(changes)
    return cond


def active(code: str = "active") -> dict[str, Any]:
    return {"coding": [{"system": fhir.CONDITION_CLINICAL, "code": code}]}


def test_conditions_active_or_without_status_are_used_with_their_onset() -> None:
    t2dm = condition("dm", SNOMED, "44054006", clinicalStatus=active(),
                     onsetDateTime="2023-09-30T10:00:00+01:00")
    copd = condition("copd", "http://hl7.org/fhir/sid/icd-10", "J44.9",
                     onsetPeriod={"start": "2020-01-01"})
    result = with_observations(t2dm, copd)
    assert result.event["conditions"] == [
        {"system": SNOMED, "code": "44054006", "onset_date": "2023-09-30"},
        {"system": "http://hl7.org/fhir/sid/icd-10", "code": "J44.9",
         "onset_date": "2020-01-01"}]
    groups = {m["from"]: m["groups"] for m in result.mapped if "condition" in m}
    assert groups == {"Condition/dm": ["diabetes_any", "diabetes_type2"],
                      "Condition/copd": ["copd"]}


@pytest.mark.parametrize("changes", [
    {"clinicalStatus": active("resolved")},
    {"clinicalStatus": active("inactive")},
    {"abatementDateTime": "2023-01-01"},
    {"verificationStatus": {"coding": [{"system": fhir.CONDITION_VERIFICATION,
                                        "code": "refuted"}]}},
    {"verificationStatus": {"coding": [{"system": fhir.CONDITION_VERIFICATION,
                                        "code": "entered-in-error"}]}},
    {"subject": {"reference": "Patient/someone-else"}},
])
def test_conditions_not_current_or_not_this_persons_are_ignored(changes: dict[str, Any]
                                                                 ) -> None:
    result = with_observations(condition("c", SNOMED, "44054006", **changes))
    assert result.event["conditions"] == []
    assert ignored_reasons(result, "Condition/c")


def test_a_grouped_coding_is_preferred_and_the_others_reported() -> None:
    cond = condition("c", "http://hl7.org/fhir/sid/icd-10-uk", "E11.9")
    cond["code"]["coding"].insert(0, {"system": SNOMED, "code": "999999999"})
    cond["code"]["coding"].append({"system": "http://read.info/ctv3", "code": "C10F."})
    result = with_observations(cond)
    assert result.event["conditions"] == [{"system": "http://hl7.org/fhir/sid/icd-10-uk",
                                           "code": "E11.9"}]
    reasons = ignored_reasons(result, "Condition/c")
    assert any("Another coding" in r for r in reasons)
    assert any("ctv3" in r for r in reasons)


# ------------------------------------------------------------------------------ structure
def test_not_a_bundle() -> None:
    assert "Bundle.resourceType" in errors_of(us_core("patient-example.json"))
    assert "Bundle" in errors_of([1, 2])
    assert "Bundle.type" in errors_of({"resourceType": "Bundle", "type": "searchset",
                                       "entry": []})


def test_a_transaction_bundle_is_accepted() -> None:
    body = us_core_bundle()
    body["type"] = "transaction"
    for entry in body["entry"]:
        entry["request"] = {"method": "POST", "url": entry["resource"]["resourceType"]}
    assert run(body).event["facts"]["bmi"] == 16.2


def test_entry_without_resource_and_missing_patient_or_encounter() -> None:
    body = bundle(us_core("patient-example.json"), encounter())
    body["entry"].append({"fullUrl": "urn:uuid:x"})
    result = run(body)  # nothing in it could be mapped: reported, not refused
    assert {"from": "Bundle.entry[2]", "element": "resource",
            "reason": "No resource with a resourceType: nothing in this entry is used."
            } in result.ignored
    errors = errors_of(bundle(encounter()))
    assert errors["Bundle.entry"] == ["A Patient resource is required."]
    errors = errors_of(bundle(us_core("patient-example.json")))
    assert errors["Bundle.entry"] == ["An Encounter resource is required."]


def test_two_patients_are_refused() -> None:
    second = us_core("patient-example.json") | {"id": "second"}
    errors = errors_of(bundle(us_core("patient-example.json"), encounter(), second))
    assert "Bundle.entry[2].resource" in errors


def test_wrong_types_name_the_element_by_its_path() -> None:
    bmi = us_core("bmi.json")
    bmi["valueQuantity"]["value"] = "16.2"
    bad_date = us_core("blood-pressure.json")
    bad_date["effectiveDateTime"] = "02/07/1999"
    body = bundle(us_core("patient-example.json"), encounter(), bmi, bad_date)
    errors = errors_of(body)
    assert errors["Bundle.entry[2].resource.valueQuantity.value"] == [
        "Observation.valueQuantity.value: Must be a JSON number."]
    assert "Bundle.entry[3].resource.effectiveDateTime" in errors


@pytest.mark.parametrize("start", ["2024-03-01T09:30:00", "2024-03-01", None])
def test_encounter_period_start_needs_a_time_and_a_zone(start: str | None) -> None:
    enc = encounter()
    if start is None:
        del enc["period"]
    else:
        enc["period"] = {"start": start}
    errors = errors_of(bundle(us_core("patient-example.json"), enc))
    (messages,) = [m for k, m in errors.items() if k == "Bundle.entry[1].resource.period.start"]
    assert "Encounter.period.start" in messages[0]


def test_a_cancelled_encounter_is_refused() -> None:
    errors = errors_of(bundle(us_core("patient-example.json"), encounter(status="cancelled")))
    assert "Bundle.entry[1].resource.status" in errors


def test_errors_of_the_mapped_event_name_the_fact_and_the_resource() -> None:
    provenance = {"facts.bmi": fhir.Origin("Observation/bmi-1",
                                           "Bundle.entry[2].resource.valueQuantity.value")}
    out = fhir.explain_errors({"facts.bmi": ["Must be between 10 and 100."],
                               "source": ["Must not be empty."]}, provenance)
    assert "Observation/bmi-1" in out["facts.bmi"][0]
    assert out["Bundle.entry[2].resource.valueQuantity.value"] == [
        "facts.bmi: Must be between 10 and 100. (Observation/bmi-1)"]
    assert out["source"] == ["Must not be empty."]


def test_provenance_covers_facts_conditions_and_the_person() -> None:
    t2dm = condition("dm", SNOMED, "44054006", onsetDateTime="2023-09-30")
    result = run(bundle(uk_patient(), encounter(), fresh(us_core("bmi.json")), t2dm))
    prov = result.provenance
    assert prov["facts.bmi"] == fhir.Origin("Observation/bmi",
                                            "Bundle.entry[2].resource.valueQuantity.value")
    assert prov["person.nhs_number"].path == "Bundle.entry[0].resource.identifier[0].value"
    assert prov["conditions.0.onset_date"].path == "Bundle.entry[3].resource.onsetDateTime"
    assert prov["occurred_at"].path == "Bundle.entry[1].resource.period.start"


def test_the_fixture_files_are_not_changed_by_mapping() -> None:
    body = us_core_bundle()
    before = copy.deepcopy(body)
    run(body)
    assert body == before


# ------------------------------------------------------------------------------ helpers
@pytest.mark.parametrize(("raw", "expected"), [
    ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-02", datetime(2024, 2, 1, tzinfo=UTC)),
    ("1999-07-02", datetime(1999, 7, 2, tzinfo=UTC)),
    ("2023-08-14T20:40:49.675000+00:00", datetime(2023, 8, 14, 20, 40, 49, 675000, tzinfo=UTC)),
    ("2015-11-01T17:00:14-05:00", datetime(2015, 11, 1, 22, 0, 14, tzinfo=UTC)),
    ("2021-12-11T10:05:31.123456789Z", datetime(2021, 12, 11, 10, 5, 31, 123456, tzinfo=UTC)),
    ("not a date", None),
])
def test_parse_datetime(raw: str, expected: datetime | None) -> None:
    assert fhir.parse_datetime(raw) == expected


@pytest.mark.parametrize(("name", "source"), [
    ("test", "test"), ("GP System  Y02345", "GP-System-Y02345"),
    ("https://fhir-ehr.example.com/", "https://fhir-ehr.example.com/"), ("  ", "fhir")])
def test_slug_source(name: str, source: str) -> None:
    assert fhir.slug_source(name) == source


def test_reference_ids() -> None:
    assert fhir.reference_id("Practitioner/123") == ("Practitioner", "123")
    assert fhir.reference_id("https://x.example/fhir/PractitionerRole/9/_history/2") == (
        "PractitionerRole", "9")
    assert fhir.reference_id("urn:uuid:abc") == (None, "urn:uuid:abc")


@pytest.mark.parametrize(("fact", "raw", "unit", "value", "converted"), [
    ("systolic_bp", 18, "kPa", 135, True),  # 135.01 mm[Hg], rounded half up
    ("diastolic_bp", 80.5, "mm[Hg]", 81, False),
    ("bmi", 31, "kg/m^2", 31.0, False),
    ("bmi", 31.2, None, 31.2, False),
    ("hba1c_mmol_mol", 7.0, "%", 53.0, True),  # (7.0 - 2.15) x 10.929
    ("hba1c_mmol_mol", 48, None, 48.0, False),
    ("audit_c", 4, "{score}", 4, False),
])
def test_unit_conversion_to_the_catalogue_unit(fact: str, raw: float, unit: str | None,
                                                value: Any, converted: bool) -> None:
    result = units.convert(CATALOGUE, fact, raw, unit)
    assert result.value == value
    assert type(result.value) is type(value)
    assert (result.note is not None) == converted


@pytest.mark.parametrize(("fact", "unit"), [("bmi", "lb/in2"), ("systolic_bp", "cmH2O"),
                                            ("hba1c_mmol_mol", "mg/dL"), ("audit_c", "%")])
def test_an_unknown_unit_is_not_converted(fact: str, unit: str) -> None:
    with pytest.raises(units.Unconvertible, match=f"Unit '{re.escape(unit)}' cannot be"):
        units.convert(CATALOGUE, fact, 5, unit)


def test_every_prefetched_code_is_in_a_code_table() -> None:
    """The CDS prefetch template asks only for codes the mapping reads."""
    tables = {*observations.NUMERIC_CODES, *observations.BP_PANELS, *observations.SYSTOLIC,
              *observations.DIASTOLIC, *smoking.SMOKING_STATUS_CODES, *scores.SCORE_PANELS,
              *((LOINC, code) for code in scores.ITEM_SCALE), *body.MEASURES,
              *((SNOMED, code) for code in smoking.SMOKING_VALUES)}
    asked = {(LOINC, c) for c in fhir.PREFETCH_LOINC} | {(SNOMED, c) for c in fhir.PREFETCH_SNOMED}
    assert asked <= tables


# ------------------------------------------------------------------------------ robustness
def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    children = node.items() if isinstance(node, dict) else (
        enumerate(node) if isinstance(node, list) else ())
    for key, value in children:
        found.extend(_paths(value, (*prefix, key)))
    return found


def test_any_mangled_bundle_maps_or_is_refused_with_422_never_crashes() -> None:
    """Every element of a full bundle replaced by wrong JSON types, a few at a time."""
    import random

    from mecc.intake.schemas import build_event_schemas

    schema = build_event_schemas(CATALOGUE)
    wrong: list[Any] = [None, 0, -5, 3.5, True, "", "x", "2024", [], {}, [1], [{}],
                        {"coding": "x"}, {"coding": [1]}, {"value": "x"}, "Patient/example"]
    base = us_core_bundle()
    base["entry"][0]["resource"] = uk_patient()
    places = _paths(base)
    rng = random.Random(20261125)  # noqa: S311 - reproducible test data, not secrets
    for _ in range(1500):
        body = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            *parents, last = rng.choice(places)
            node: Any = body
            try:
                for key in parents:
                    node = node[key]
            except (KeyError, IndexError, TypeError):
                continue
            if (isinstance(node, dict) and isinstance(last, str)) or (
                    isinstance(node, list) and isinstance(last, int) and last < len(node)):
                node[last] = rng.choice(wrong)
        try:
            result = run(body)
        except ValidationFailed as exc:
            assert exc.errors
            continue
        json.dumps([result.event, result.mapped, result.ignored])
        errors = schema().validate(result.event)
        fhir.explain_errors({str(k): ["x"] for k in errors}, result.provenance)
