"""POST /api/v1/fhir on the real app and database (SQLite and PostgreSQL).

Bundles are built in code from the public US Core examples (shared/fixtures/us-core).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mecc.interop import fhir
from mecc.store.models import Event
from tests.support.factories import auth_header

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("MECC_SHARED_FIXTURES", ROOT.parent / "shared" / "fixtures"))
URL = "/api/v1/fhir"
PROBLEM_JSON = "application/problem+json"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def us_core(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "us-core" / name).read_text())


def recent(minutes: int = 5) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def encounter(**changes: Any) -> dict[str, Any]:
    enc = us_core("encounter-example-1.json")
    enc["period"] = {"start": recent()}
    enc.update(changes)
    return enc


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in resources]}


def fresh(resource: dict[str, Any]) -> dict[str, Any]:
    """An example Observation re-dated to an hour before the contact: the examples date from
    1999-2023, and a value older than its fact's maximum age is not used."""
    for name in ("effectiveDateTime", "effectivePeriod", "effectiveInstant"):
        resource.pop(name, None)
    resource["effectiveDateTime"] = recent(60)
    return resource


def us_core_bundle(**encounter_changes: Any) -> dict[str, Any]:
    return bundle(us_core("patient-example.json"), encounter(**encounter_changes),
                  fresh(us_core("bmi.json")), fresh(us_core("blood-pressure.json")),
                  fresh(us_core("bp-data-absent.json")), fresh(us_core("some-day-smoker.json")),
                  fresh(us_core("Observation-AUDIT-C-item-example-75626-2.json")),
                  us_core("condition-encounter-diagnosis-example1.json"))


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status and body["detail"]
    return body


def stored(app: Any) -> list[Event]:
    with app.extensions["mecc"].db.session() as session:
        return list(session.scalars(select(Event)))


def test_a_us_core_bundle_is_accepted_like_an_event(app: Any, client: Any,
                                                    make_key: Any) -> None:
    key = make_key()
    response = client.post(URL, json=us_core_bundle(), headers=auth_header(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert {"id", "event_id", "source", "status", "links", "mapped", "ignored"} == set(body)
    assert (body["event_id"], body["source"], body["status"]) == ("example-1", "test", "queued")
    assert body["links"] == {"self": f"/api/v1/events/{body['id']}",
                             "prompts": f"/api/v1/prompts?event={body['id']}"}
    assert {"fact": "bmi", "value": 16.2, "from": "Observation/bmi"}.items() <= next(
        m for m in body["mapped"] if m.get("fact") == "bmi").items()
    assert any(i["from"] == "Observation/bp-data-absent" and "dataAbsentReason" in i["reason"]
               for i in body["ignored"])
    detail = client.get(body["links"]["self"], headers=auth_header(key)).get_json()
    assert detail["facts"] == {"bmi": 16.2, "systolic_bp": 109, "diastolic_bp": 44,
                               "smoking_status": "current", "audit_c": 0}
    assert detail["conditions"][0]["code"] == "39065001"
    assert detail["organisation"] == "Y02345" and detail["setting"] == "other"
    assert detail["contact_type"] == "appointment"


def test_the_same_bundle_again_is_200_and_a_changed_one_409(app: Any, client: Any,
                                                            make_key: Any) -> None:
    key = make_key()
    body = us_core_bundle()
    first = client.post(URL, json=body, headers=auth_header(key))
    again = client.post(URL, json=body, headers=auth_header(key))
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert len(stored(app)) == 1
    body["entry"][2]["resource"]["valueQuantity"]["value"] = 35.0
    problem(client.post(URL, json=body, headers=auth_header(key)), 409)


def test_source_from_the_query_or_the_keys_name(client: Any, make_key: Any) -> None:
    key = make_key(name="GP System Y02345")
    response = client.post(URL, json=us_core_bundle(), headers=auth_header(key))
    assert response.get_json()["source"] == "GP-System-Y02345"
    response = client.post(f"{URL}?source=emis-web", json=us_core_bundle(),
                           headers=auth_header(key))
    assert response.status_code == 202 and response.get_json()["source"] == "emis-web"
    body = problem(client.post(f"{URL}?source=has%20space", json=us_core_bundle(),
                               headers=auth_header(key)), 422)
    assert "source" in body["errors"]


def test_fhir_json_content_type_and_uk_core_patient(app: Any, client: Any,
                                                    make_key: Any) -> None:
    key = make_key()
    patient = {"resourceType": "Patient", "id": "p-uk",
               "identifier": [{"system": fhir.NHS_NUMBER_SYSTEM, "value": "9434765919"}],
               "gender": "male", "birthDate": "1960-05-01",
               "extension": [{"url": fhir.ETHNIC_CATEGORY_URL, "valueCodeableConcept": {
                   "coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/"
                                         "UKCore-EthnicCategoryEngland", "code": "R"}]}}],
               "address": [{"postalCode": "M14 5AB"}]}
    enc = encounter(serviceProvider={"identifier": {"system": ODS, "value": "Y02345"}},
                    identifier=[{"value": "enc-uk-1"}])
    response = client.post(URL, data=json.dumps(bundle(patient, enc)),
                           headers={**auth_header(key),
                                    "Content-Type": "application/fhir+json"})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["event_id"] == "enc-uk-1"
    (row,) = stored(app)
    assert row.payload["person"] == {"id": "p-uk", "birth_date": "1960-05-01", "sex": "male",
                                     "ethnicity_group": "chinese", "postcode_district": "M14"}
    assert row.person_key is not None  # the NHS number, hashed; never stored in clear
    assert "9434765919" not in json.dumps(row.payload)
    assert "9434765919" not in response.get_data(as_text=True)


def test_a_value_out_of_range_names_the_fact_and_the_resource(app: Any, client: Any,
                                                              make_key: Any) -> None:
    body = us_core_bundle()
    body["entry"][2]["resource"]["valueQuantity"]["value"] = 5
    problem_body = problem(client.post(URL, json=body, headers=auth_header(make_key())), 422)
    errors = problem_body["errors"]
    assert "facts.bmi" in errors and "Observation/bmi" in errors["facts.bmi"][0]
    assert "Bundle.entry[2].resource.valueQuantity.value" in errors
    assert stored(app) == []


def test_an_invalid_nhs_number_names_the_patient_identifier(client: Any, make_key: Any) -> None:
    body = us_core_bundle()
    body["entry"][0]["resource"]["identifier"].append(
        {"system": fhir.NHS_NUMBER_SYSTEM, "value": "1234567890"})
    errors = problem(client.post(URL, json=body, headers=auth_header(make_key())), 422)["errors"]
    assert "person.nhs_number" in errors
    assert "Bundle.entry[0].resource.identifier[1].value" in errors
    assert "1234567890" not in json.dumps(errors)


@pytest.mark.parametrize("start", ["2024-03-01T09:30:00", "2024-03-01"])
def test_a_start_without_a_zone_is_422_naming_it(client: Any, make_key: Any, start: str) -> None:
    errors = problem(client.post(URL, json=us_core_bundle(period={"start": start}),
                                 headers=auth_header(make_key())), 422)["errors"]
    messages = errors["Bundle.entry[1].resource.period.start"]
    assert "Encounter.period.start" in messages[0]


@pytest.mark.parametrize(("body", "path"), [
    ({"resourceType": "Patient", "id": "x"}, "Bundle.resourceType"),
    ({"resourceType": "Bundle", "type": "document", "entry": []}, "Bundle.type"),
    # An entry without a resource is reported (nothing in it is used); the Patient is missing.
    ({"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "urn:x"}]},
     "Bundle.entry"),
    ({"resourceType": "Bundle", "type": "collection", "entry": "x"}, "Bundle.entry"),
    ([], "Bundle"),
])
def test_structurally_invalid_fhir_is_422_naming_the_element(app: Any, client: Any,
                                                             make_key: Any, body: Any,
                                                             path: str) -> None:
    errors = problem(client.post(URL, json=body, headers=auth_header(make_key())), 422)["errors"]
    assert path in errors
    assert stored(app) == []


def test_missing_patient_or_encounter_and_wrong_types(client: Any, make_key: Any) -> None:
    key = make_key()
    errors = problem(client.post(URL, json=bundle(encounter()), headers=auth_header(key)),
                     422)["errors"]
    assert errors["Bundle.entry"] == ["A Patient resource is required."]
    errors = problem(client.post(URL, json=bundle(us_core("patient-example.json")),
                                 headers=auth_header(key)), 422)["errors"]
    assert errors["Bundle.entry"] == ["An Encounter resource is required."]
    body = us_core_bundle()
    body["entry"][2]["resource"]["valueQuantity"]["value"] = "16.2"
    errors = problem(client.post(URL, json=body, headers=auth_header(key)), 422)["errors"]
    assert errors["Bundle.entry[2].resource.valueQuantity.value"] == [
        "Observation.valueQuantity.value: Must be a JSON number."]


def test_auth_scope_and_organisation(client: Any, make_key: Any) -> None:
    problem(client.post(URL, json=us_core_bundle()), 401)
    reader = make_key(scopes=("prompts:read",))
    problem(client.post(URL, json=us_core_bundle(), headers=auth_header(reader)), 403)
    other = us_core_bundle(serviceProvider={"identifier": {"system": ODS, "value": "B86001"}})
    problem(client.post(URL, json=other, headers=auth_header(make_key())), 403)
    anywhere = make_key(organisation="*")
    errors = problem(client.post(URL, json=us_core_bundle(), headers=auth_header(anywhere)),
                     422)["errors"]
    assert "organisation" in errors  # a key for all organisations needs the ODS code
    assert "Bundle.entry[1].resource.serviceProvider" in errors
    response = client.post(URL, json=other, headers=auth_header(anywhere))
    assert response.status_code == 202


def test_not_json_is_415(client: Any, make_key: Any) -> None:
    response = client.post(URL, data="<Bundle/>", headers={**auth_header(make_key()),
                                                           "Content-Type": "application/xml"})
    problem(response, 415)


def test_the_event_is_evaluated_like_any_other(client: Any, make_key: Any,
                                               evaluate_pending: Any) -> None:
    key = make_key()
    smoker = fresh(us_core("some-day-smoker.json"))
    response = client.post(URL, json=bundle(us_core("patient-example.json"), encounter(),
                                            smoker), headers=auth_header(key))
    assert response.status_code == 202
    assert evaluate_pending() == 1
    prompts = client.get(response.get_json()["links"]["prompts"],
                         headers=auth_header(key)).get_json()["items"]
    assert [p["rule"]["key"] for p in prompts] == ["smoking-very-brief-advice"]


RECORDS = ROOT / "tests" / "fixtures" / "fhir"


def test_a_generated_uk_record_gives_a_prompt_that_names_its_evidence(
        client: Any, make_key: Any, evaluate_pending: Any) -> None:
    """A transaction Bundle identified by fullUrls only, with a sodium result without status
    (reported, not refused), through intake and evaluation: the DPP prompt rests on the
    HbA1c "44 mmol/mol Hb" of the contact's day, and says so."""
    key = make_key()
    body = json.loads((RECORDS / "uk_healthy.json").read_text())
    sodium = next(e["resource"] for e in body["entry"]
                  if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "2951-2")
    del sodium["status"]
    response = client.post(URL, json=body, headers=auth_header(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert any(i.get("element") == "status" and "Observation.status: Required." in i["reason"]
               for i in response.get_json()["ignored"])
    detail = client.get(response.get_json()["links"]["self"], headers=auth_header(key)).get_json()
    assert detail["fact_dates"]["hba1c_mmol_mol"] == "2026-11-20T09:00:00+00:00"
    assert detail["ignored_facts"] == []
    assert evaluate_pending() == 1
    prompts = client.get(response.get_json()["links"]["prompts"],
                         headers=auth_header(key)).get_json()["items"]
    dpp = next(p for p in prompts if p["rule"]["key"] == "diabetes-prevention-programme")
    assert {"fact": "hba1c_mmol_mol", "value": 44.0,
            "recorded_at": "2026-11-20T09:00:00+00:00"} in dpp["evidence"]
