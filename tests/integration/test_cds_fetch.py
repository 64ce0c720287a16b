"""CDS Hooks without (or with part of) the prefetch: the service fetches what is missing from
the call's fhirServer, a real FHIR server process (fhirsnake, tests/support/fhir_server.py)
serving a generated UK-coded record (tests/fixtures/fhir/uk_healthy.json), with the call's
bearer token, only from hosts registered for the client; 412 only when neither the prefetch
nor the server gives the Patient.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mecc.store.models import Event, Prompt
from tests.integration.test_cds_hooks import VIEW, Client
from tests.support.fhir_server import serve_fhir
from tests.support.processes import Proc

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ehr-access-token-0001"
DPP = "diabetes-prevention-programme"


def server_copy() -> tuple[str, list[dict[str, Any]]]:
    """The record as a FHIR server holds it: ids from the fullUrls, references as Type/id,
    observations three days old (so they are recent whenever the test runs)."""
    record = json.loads((ROOT / "tests" / "fixtures" / "fhir" / "uk_healthy.json").read_text())
    names = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['fullUrl'].split(':')[-1]}"
             for e in record["entry"]}
    text = json.dumps([e["resource"] | {"id": e["fullUrl"].split(":")[-1]}
                       for e in record["entry"]])
    for url, name in names.items():
        text = text.replace(f'"{url}"', json.dumps(name))
    resources: list[dict[str, Any]] = json.loads(text)
    when = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    for res in resources:
        if res["resourceType"] == "Observation":
            res["effectiveDateTime"] = when
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return patient, resources


@pytest.fixture(scope="module")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str,
                                                                            list[Any]]]:
    patient, resources = server_copy()
    proc = serve_fhir(resources, tmp_path_factory.mktemp("fhir"), TOKEN)
    try:
        yield proc, patient, resources
    finally:
        proc.stop(grace=5)


def call(patient: str, server: str, *, token: str = TOKEN,
         prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view", "hookInstance": str(uuid.uuid4()),
        "fhirServer": server,
        "fhirAuthorization": {"access_token": token, "token_type": "Bearer",
                              "expires_in": 300, "scope": "patient/*.read",
                              "subject": "mecc-prompts"},
        "context": {"userId": "Practitioner/st-1", "patientId": patient}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def rule_keys(app: Any, hook_instance: str) -> set[str]:
    with app.extensions["mecc"].db.session() as session:
        event = session.scalar(select(Event).where(Event.event_id == hook_instance))
        assert event is not None
        return set(session.scalars(select(Prompt.rule_key).where(Prompt.event_id == event.id)))


def registered(app: Any, servers: list[str]) -> Client:
    ehr = Client(app)
    from mecc.interop import cds

    with app.extensions["mecc"].db.session() as session:
        cds.register_client(session, iss=ehr.iss, jwks=ehr.jwks, organisation="Y02345",
                            actor="test", fhir_servers=servers)
        session.commit()
    return ehr


def test_without_prefetch_everything_is_fetched_with_the_token(
        seeded: Any, client: Any, fhir_server: tuple[Proc, str, list[Any]]) -> None:
    proc, patient, _ = fhir_server
    ehr = registered(seeded, [f"127.0.0.1:{proc.port}"])
    body = call(patient, proc.base)
    response = client.post(VIEW, json=body, headers=ehr.headers(VIEW))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"]
    assert DPP in rule_keys(seeded, body["hookInstance"])  # HbA1c 44 mmol/mol Hb, fetched
    with seeded.extensions["mecc"].db.session() as session:
        event = session.scalar(select(Event).where(Event.event_id == body["hookInstance"]))
        assert event is not None
        assert event.payload["facts"]["hba1c_mmol_mol"] == 44.0
        assert event.payload["person"]["ethnicity_group"] == "black_african"
        assert event.payload["fact_dates"]["hba1c_mmol_mol"] == (
            datetime.now(UTC) - timedelta(days=3)).date().isoformat()


def test_a_partial_prefetch_is_completed_from_the_server(
        seeded: Any, client: Any, fhir_server: tuple[Proc, str, list[Any]]) -> None:
    proc, patient, resources = fhir_server
    ehr = registered(seeded, [f"127.0.0.1:{proc.port}"])
    own = next(r for r in resources if r["resourceType"] == "Patient")
    body = call(patient, proc.base, prefetch={"patientToGreet": own, "conditions": None})
    response = client.post(VIEW, json=body, headers=ehr.headers(VIEW))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert DPP in rule_keys(seeded, body["hookInstance"])


def test_a_wrong_token_or_an_unregistered_host_is_412_saying_why(
        seeded: Any, client: Any, fhir_server: tuple[Proc, str, list[Any]]) -> None:
    proc, patient, _ = fhir_server
    ehr = registered(seeded, [f"127.0.0.1:{proc.port}"])
    response = client.post(VIEW, json=call(patient, proc.base, token="stolen"),
                           headers=ehr.headers(VIEW))
    assert response.status_code == 412
    assert "answered 401" in response.get_json()["detail"]
    elsewhere = registered(seeded, ["fhir.ehr.example.nhs.uk"])
    response = client.post(VIEW, json=call(patient, proc.base), headers=elsewhere.headers(VIEW))
    assert response.status_code == 412
    assert "not one of this client's registered FHIR servers" in response.get_json()["detail"]
    unlisted = registered(seeded, [])
    response = client.post(VIEW, json=call(patient, proc.base), headers=unlisted.headers(VIEW))
    assert response.status_code == 412
    assert "no FHIR server registered" in response.get_json()["detail"]


def test_a_name_for_a_private_address_is_refused_unless_the_address_is_listed(
        seeded: Any, client: Any, fhir_server: tuple[Proc, str, list[Any]]) -> None:
    """The webhook SSRF rules: a loopback address is fetched from only when the allow-list
    names it (here `localhost`); another spelling of the same address is another host."""
    proc, patient, _ = fhir_server
    ehr = registered(seeded, [f"localhost:{proc.port}"])
    response = client.post(VIEW, json=call(patient, f"http://localhost:{proc.port}"),
                           headers=ehr.headers(VIEW))
    assert response.status_code == 200, response.get_data(as_text=True)
    response = client.post(VIEW, json=call(patient, f"http://127.0.0.1:{proc.port}"),
                           headers=ehr.headers(VIEW))
    assert response.status_code == 412
