"""The rule pack's "never contradict a diagnosis or a medicine" promise through each door: a JSON
event (`POST /api/v1/events`), a FHIR Bundle (`POST /api/v1/fhir`) and a CDS Hooks call, on the
real app and database. Each contact would get the Diabetes Prevention Programme on its HbA1c of
44 mmol/mol; only the ones whose record does not contradict it do.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.test_cds_hooks import Client, hooks, searchset
from tests.support.factories import auth_header, make_event

ROOT = Path(__file__).resolve().parents[2]
DPP = "diabetes-prevention-programme"
DMD = "https://dmd.nhs.uk"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CM = "http://hl7.org/fhir/sid/icd-10-cm"
METFORMIN = "325278007"  # Metformin 500mg tablets (VMP)
VIEW = "/cds-services/mecc-patient-view"


def rule_keys(client: Any, key: str, event_id: str) -> set[str]:
    response = client.get(f"/api/v1/events/{event_id}", headers=auth_header(key))
    assert response.status_code == 200, response.get_data(as_text=True)
    return {p["rule"]["key"] for p in response.json["prompts"]}


def test_json_events_gestational_is_not_diabetes_unspecified_in_pregnancy_is(
        client: Any, make_key: Any, evaluate_pending: Any) -> None:
    key = make_key()
    ids = {}
    for name, conditions in (("gestational", [{"system": CM, "code": "O24.410"}]),
                             ("in-pregnancy", [{"system": CM, "code": "O24.919"}]),
                             ("prediabetes", [{"system": CM, "code": "R73.03"}]),
                             ("type-1", [{"system": CM, "code": "E10.9"}])):
        body = make_event(person={"id": f"p-{name}", "age": 34, "sex": "female"},
                          facts={"hba1c_mmol_mol": 44}, conditions=conditions,
                          preferences={"opted_out": False, "declined_topics": []})
        response = client.post("/api/v1/events", json=body, headers=auth_header(key))
        assert response.status_code == 202, response.get_data(as_text=True)
        ids[name] = response.json["id"]
    assert evaluate_pending() == 4
    assert DPP in rule_keys(client, key, ids["gestational"])
    assert DPP in rule_keys(client, key, ids["prediabetes"])
    assert DPP not in rule_keys(client, key, ids["in-pregnancy"])
    assert DPP not in rule_keys(client, key, ids["type-1"])


def uk_record() -> dict[str, Any]:
    """The generated UK record: an HbA1c of 44 mmol/mol on the contact's day, no diabetes."""
    body: dict[str, Any] = json.loads((ROOT / "tests" / "fixtures" / "fhir" / "uk_healthy.json")
                                      .read_text())
    return body


def with_metformin(body: dict[str, Any], status: str) -> dict[str, Any]:
    """The record with a metformin prescription whose medicine is a contained Medication."""
    out = copy.deepcopy(body)
    patient = next(e["fullUrl"] for e in out["entry"]
                   if e["resource"]["resourceType"] == "Patient")
    out["entry"].append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {
        "method": "POST", "url": "MedicationRequest"}, "resource": {
        "resourceType": "MedicationRequest", "status": status, "intent": "order",
        "subject": {"reference": patient}, "authoredOn": "2026-08-01",
        "contained": [{"resourceType": "Medication", "id": "med", "code": {"coding": [
            {"system": DMD, "code": METFORMIN, "display": "Metformin 500mg tablets"}]}}],
        "medicationReference": {"reference": "#med"}}})
    return out


def test_fhir_a_contained_or_paused_diabetes_medicine_is_never_contradicted(
        client: Any, make_key: Any, evaluate_pending: Any) -> None:
    key = make_key()
    sent = {}
    for status in ("active", "on-hold", "stopped"):
        body = with_metformin(uk_record(), status)
        body["id"] = str(uuid.uuid4())
        patient = next(e["resource"] for e in body["entry"]
                       if e["resource"]["resourceType"] == "Patient")
        patient["id"] = f"p-{status}"  # three people: no suppression between them
        encounter = next(e["resource"] for e in body["entry"]
                         if e["resource"]["resourceType"] == "Encounter")
        encounter["id"] = str(uuid.uuid4())
        response = client.post("/api/v1/fhir", json=body, headers=auth_header(key))
        assert response.status_code == 202, response.get_data(as_text=True)
        sent[status] = response.get_json()["links"]["self"].rsplit("/", 1)[-1]
    assert evaluate_pending() == 3
    assert DPP not in rule_keys(client, key, sent["active"])
    assert DPP not in rule_keys(client, key, sent["on-hold"])
    assert DPP in rule_keys(client, key, sent["stopped"])


def test_cds_hooks_no_dpp_card_for_icd10_cm_diabetes(seeded: Any, client: Any) -> None:
    ehr = Client(seeded)
    cards_by_case = {}
    # The coded contact first: a DPP card there would also silence the second (same person,
    # same day), so both assertions fail if the diagnosis is not read.
    for case, conditions in (("e11", [{
            "resourceType": "Condition", "id": "dm", "subject": {"reference": "Patient/1288992"},
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active"}]},
            "code": {"coding": [{"system": CM, "code": "E11.9"}]}}]), ("none", [])):
        body = hooks("request-patient-view.json")
        body["hookInstance"] = str(uuid.uuid4())
        body["prefetch"]["conditions"] = searchset(*conditions)
        body["prefetch"]["observations"] = searchset({
            "resourceType": "Observation", "id": "hba1c", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "59261-8"}]},
            "subject": {"reference": "Patient/1288992"},
            "effectiveDateTime": (datetime.now(UTC) - timedelta(days=3)).date().isoformat(),
            "valueQuantity": {"value": 44, "unit": "mmol/mol"}})
        response = client.post(VIEW, json=body, headers=ehr.headers(VIEW))
        assert response.status_code == 200, response.get_data(as_text=True)
        cards_by_case[case] = [c["summary"] for c in response.get_json()["cards"]]
    assert any("Diabetes Prevention Programme" in s for s in cards_by_case["none"])
    assert not any("Diabetes Prevention Programme" in s for s in cards_by_case["e11"])
