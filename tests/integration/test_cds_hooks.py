"""CDS Hooks 2.0 on the real app and database (SQLite and PostgreSQL).

Clients sign fresh ES384 JWTs with keys generated here; the HL7 examples in
shared/fixtures/cds-hooks are used as they are, or patched in code (never edited).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from mecc.interop import cds, fhir
from mecc.store.models import Event, Prompt, PromptOutcome, UsedJti
from tests.support.factories import auth_header

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("MECC_SHARED_FIXTURES", ROOT.parent / "shared" / "fixtures"))
BASE = "http://localhost"
VIEW = "/cds-services/mecc-patient-view"
START = "/cds-services/mecc-encounter-start"
ISS = "https://ehr.example.nhs.uk/"
PROBLEM_JSON = "application/problem+json"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CARD_KEYS = {"uuid", "summary", "detail", "indicator", "source", "suggestions",
             "selectionBehavior", "overrideReasons", "links"}


def hooks(name: str) -> Any:
    return json.loads((FIXTURES / "cds-hooks" / name).read_text())


class Client:
    """A CDS client: an ES384 key pair, registered for an organisation."""

    def __init__(self, app: Any, organisation: str = "Y02345", iss: str = ISS) -> None:
        self.private = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        public.update({"kid": "ehr-key-1", "alg": "ES384", "use": "sig"})
        self.jwks = {"keys": [public]}
        self.iss = iss
        with app.extensions["mecc"].db.session() as session:
            cds.register_client(session, iss=iss, jwks=self.jwks, organisation=organisation,
                                actor="test")
            session.commit()

    def token(self, path: str, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.iss, "aud": BASE + path, "iat": now, "exp": now + 300,
                   "jti": str(uuid.uuid4()), "tenant": "2ddd6c3a"}
        payload.update(claims)
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, self.private,
                          algorithm="ES384", headers={"kid": "ehr-key-1", "typ": "JWT"})

    def headers(self, path: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(path, **claims)}"}


@pytest.fixture
def ehr(seeded: Any) -> Client:
    return Client(seeded)


def observation(ident: str, code: tuple[str, str], **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": ident, "status": "final",
            "code": {"coding": [{"system": code[0], "code": code[1]}]},
            "subject": {"reference": "Patient/1288992"},
            "effectiveDateTime": (datetime.now(UTC) - timedelta(days=3)).date().isoformat(),
            **value}


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"resource": r} for r in resources]}


def patient_view(**facts: bool) -> dict[str, Any]:
    """The spec's patient-view request, with a fresh hookInstance and some clinical data."""
    body = hooks("request-patient-view.json")
    body["hookInstance"] = str(uuid.uuid4())
    patient = body["prefetch"]["patientToGreet"]
    patient["address"] = [{"postalCode": "M14 5AB"}]
    body["prefetch"]["conditions"] = searchset()
    body["prefetch"]["observations"] = searchset(
        observation("smoke", (SNOMED, "77176002")),
        observation("bmi", (LOINC, "39156-5"),
                    valueQuantity={"value": 33.0, "unit": "kg/m2",
                                   "system": "http://unitsofmeasure.org", "code": "kg/m2"}))
    return body


def cards_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"cards"}
    return list(body["cards"])


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status
    return body


def count(app: Any, model: Any) -> int:
    with app.extensions["mecc"].db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def events(app: Any) -> list[Event]:
    with app.extensions["mecc"].db.session() as session:
        return list(session.scalars(select(Event)))


# ------------------------------------------------------------------------------ discovery
def test_discovery_is_open_and_shaped_like_the_spec(client: Any) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    spec = hooks("discovery-response.json")
    allowed = set().union(*(s.keys() for s in spec["services"]))
    services = response.get_json()["services"]
    assert {s["id"] for s in services} == {"mecc-encounter-start", "mecc-patient-view"}
    assert all(set(s) <= allowed for s in services)


# ------------------------------------------------------------------------------ a hook call
def test_patient_view_answers_one_card_per_shown_prompt(seeded: Any, client: Any, ehr: Client,
                                                        make_key: Any) -> None:
    body = patient_view()
    cards = cards_of(client.post(VIEW, json=body, headers=ehr.headers(VIEW)))
    (event,) = events(seeded)
    assert event.status == "evaluated"  # evaluated in the request, by its claim
    assert (event.event_id, event.source) == (body["hookInstance"], ISS)
    assert event.staff_id == "example"  # context.userId Practitioner/example
    assert event.person_id == "1288992" and event.api_key_id is None
    with seeded.extensions["mecc"].db.session() as session:
        prompts = {p.id: p for p in session.scalars(select(Prompt))}
    shown = {pid for pid, p in prompts.items() if p.status == "new"}
    assert {c["uuid"] for c in cards} == shown
    by_rule = {prompts[c["uuid"]].rule_key: c for c in cards}
    assert {"smoking-very-brief-advice", "weight-management-referral"} <= set(by_rule)
    spec = hooks("card-response.json")
    for card in cards:
        assert set(card) <= CARD_KEYS
        assert len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"].startswith("MECC Prompts: ")
        assert card["source"]["topic"]["system"] == cds.TOPIC_SYSTEM
        assert card["overrideReasons"] and all(r["display"] for r in card["overrideReasons"])
        assert set(card["source"]) <= {"label", "url", "icon", "topic"}
    smoking = by_rule["smoking-very-brief-advice"]
    assert smoking["source"]["label"] == "MECC Prompts: Smoker - very brief advice on stopping"
    assert smoking["source"]["url"].startswith("https://")
    assert smoking["selectionBehavior"] == "at-most-one"
    assert smoking["suggestions"][0]["label"].startswith("Refer to")
    spec_link_keys = set(spec["cards"][0]["links"][0])
    assert smoking["links"] and all(set(link) <= spec_link_keys | {"appContext"}
                                    and link["type"] == "absolute"
                                    and link["url"].startswith("https://")
                                    for link in smoking["links"])
    key = make_key()
    detail = client.get(f"/api/v1/events/{event.id}", headers=auth_header(key)).get_json()
    assert detail["status"] == "evaluated"
    assert detail["facts"] == {"smoking_status": "current", "bmi": 33.0}


def test_no_worker_evaluates_it_again(seeded: Any, client: Any, ehr: Client,
                                     evaluate_pending: Callable[[], int]) -> None:
    cards = cards_of(client.post(VIEW, json=patient_view(), headers=ehr.headers(VIEW)))
    assert evaluate_pending() == 0  # nothing left queued: the request's claim evaluated it
    with seeded.extensions["mecc"].db.session() as session:
        from mecc.evaluation import pipeline

        (event,) = session.scalars(select(Event))
        _, rows = pipeline.claim(session, [event.id])
        assert rows == []  # a redelivered task would find it evaluated and change nothing
        assert session.scalar(select(func.count()).select_from(Prompt)) >= len(cards)


def test_the_same_hook_instance_answers_the_same_cards(seeded: Any, client: Any,
                                                       ehr: Client) -> None:
    body = patient_view()
    first = cards_of(client.post(VIEW, json=body, headers=ehr.headers(VIEW)))
    again = cards_of(client.post(VIEW, json=body, headers=ehr.headers(VIEW)))
    assert again == first and first
    assert len(events(seeded)) == 1
    body["prefetch"]["observations"] = searchset()
    problem(client.post(VIEW, json=body, headers=ehr.headers(VIEW)), 409)


def test_suppression_applies_across_calls(seeded: Any, client: Any, ehr: Client) -> None:
    first = cards_of(client.post(VIEW, json=patient_view(), headers=ehr.headers(VIEW)))
    second = cards_of(client.post(VIEW, json=patient_view(), headers=ehr.headers(VIEW)))
    assert first and second == []  # the same rules, same person, same day


def test_encounter_start_reads_the_prefetched_encounter(seeded: Any, client: Any,
                                                        ehr: Client) -> None:
    body = patient_view()
    body["hook"] = "encounter-start"
    started = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=0)
    body["prefetch"]["encounter"] = {
        "resourceType": "Encounter", "id": "89284", "status": "in-progress",
        "class": {"system": fhir.V3_ACT_CODE, "code": "HH"},
        "period": {"start": started.isoformat()},
        "serviceProvider": {"identifier": {"system": fhir.ODS_SYSTEM, "value": "Y02345"}}}
    cards_of(client.post(START, json=body, headers=ehr.headers(START)))
    (event,) = events(seeded)
    assert event.occurred_at == started
    assert (event.setting, event.contact_type) == ("community_nursing", "home_visit")


def test_an_api_key_works_too(seeded: Any, client: Any, make_key: Any) -> None:
    key = make_key(name="EMIS Web")
    cards = cards_of(client.post(VIEW, json=patient_view(), headers=auth_header(key)))
    assert cards
    (event,) = events(seeded)
    assert event.source == "EMIS-Web" and event.api_key_id is not None
    reader = make_key(scopes=("prompts:read",))
    problem(client.post(VIEW, json=patient_view(), headers=auth_header(reader)), 403)


def test_missing_patient_prefetch_is_412(seeded: Any, client: Any, ehr: Client) -> None:
    body = patient_view()
    del body["prefetch"]["patientToGreet"]
    answer = problem(client.post(VIEW, json=body, headers=ehr.headers(VIEW)), 412)
    assert "Patient/1288992" in answer["detail"]
    assert events(seeded) == []


def test_malformed_requests_and_unknown_services(seeded: Any, client: Any, ehr: Client) -> None:
    body = patient_view()
    body["hook"] = "order-sign"
    assert "hook" in problem(client.post(VIEW, json=body, headers=ehr.headers(VIEW)),
                             422)["errors"]
    body = patient_view()
    body["prefetch"]["observations"]["entry"][1]["resource"]["valueQuantity"]["value"] = "x"
    errors = problem(client.post(VIEW, json=body, headers=ehr.headers(VIEW)), 422)["errors"]
    assert "prefetch.observations.entry[1].resource.valueQuantity.value" in errors
    body = patient_view()
    body["prefetch"]["observations"]["entry"][1]["resource"]["valueQuantity"]["value"] = 3
    errors = problem(client.post(VIEW, json=body, headers=ehr.headers(VIEW)), 422)["errors"]
    assert "facts.bmi" in errors
    assert "prefetch.observations.entry[1].resource.valueQuantity.value" in errors
    path = "/cds-services/nope"
    problem(client.post(path, json=patient_view(), headers=ehr.headers(path)), 404)


def test_the_clients_organisation_binds_what_it_may_post(seeded: Any, client: Any,
                                                         ehr: Client) -> None:
    body = patient_view()
    body["prefetch"]["encounter"] = {
        "resourceType": "Encounter", "id": "89284", "status": "in-progress",
        "serviceProvider": {"identifier": {"system": fhir.ODS_SYSTEM, "value": "B86001"}}}
    problem(client.post(VIEW, json=body, headers=ehr.headers(VIEW)), 403)
    assert events(seeded) == []


# ------------------------------------------------------------------------------ JWT checks
def test_a_replayed_token_is_refused(seeded: Any, client: Any, ehr: Client) -> None:
    headers = ehr.headers(VIEW)
    cards_of(client.post(VIEW, json=patient_view(), headers=headers))
    answer = problem(client.post(VIEW, json=patient_view(), headers=headers), 401)
    assert "jti" in answer["detail"]
    assert count(seeded, UsedJti) == 1


@pytest.mark.parametrize(("make", "message"), [
    (lambda c: c.token(VIEW, aud=BASE + "/cds-services/mecc-encounter-start"), "aud"),
    (lambda c: c.token(VIEW, aud="https://mecc.example" + VIEW), "aud"),
    (lambda c: c.token(VIEW, exp=int(time.time()) - 600, iat=int(time.time()) - 900),
     "expired"),
    (lambda c: c.token(VIEW, iat=int(time.time()) - 3600), "issued more than"),
    (lambda c: c.token(VIEW, jti=None), "jti"),
    (lambda c: jwt.encode({"iss": ISS, "aud": BASE + VIEW, "exp": int(time.time()) + 60,
                           "iat": int(time.time()), "jti": "j"}, None, algorithm="none"),
     "none"),
    (lambda c: jwt.encode({"iss": ISS, "aud": BASE + VIEW, "exp": int(time.time()) + 60,
                           "iat": int(time.time()), "jti": "j"},
                          "a-shared-secret-long-enough-for-hmac-256", algorithm="HS256",
                          headers={"kid": "ehr-key-1"}), "Symmetric"),
    (lambda c: Client.token(c, VIEW, iss="https://unknown.example/"), "registered"),
    (lambda c: "not.a.jwt", "readable"),
])
def test_bad_tokens_are_401(seeded: Any, client: Any, ehr: Client,
                            make: Callable[[Client], str], message: str) -> None:
    answer = problem(client.post(VIEW, json=patient_view(),
                                 headers={"Authorization": f"Bearer {make(ehr)}"}), 401)
    assert message in answer["detail"]
    assert events(seeded) == []


def test_a_token_signed_by_another_key_is_401(seeded: Any, client: Any, ehr: Client) -> None:
    impostor = ec.generate_private_key(ec.SECP384R1())
    now = int(time.time())
    token = jwt.encode({"iss": ISS, "aud": BASE + VIEW, "iat": now, "exp": now + 60,
                        "jti": str(uuid.uuid4())}, impostor, algorithm="ES384",
                       headers={"kid": "ehr-key-1"})
    problem(client.post(VIEW, json=patient_view(), headers={"Authorization": f"Bearer {token}"}),
            401)
    problem(client.post(VIEW, json=patient_view()), 401)


def test_a_client_for_all_organisations_needs_the_ods_code(seeded: Any, client: Any) -> None:
    anywhere = Client(seeded, organisation="*", iss="https://regional.example/")
    body = patient_view()
    errors = problem(client.post(VIEW, json=body, headers=anywhere.headers(VIEW)),
                     422)["errors"]
    assert "organisation" in errors
    body["prefetch"]["encounter"] = {
        "resourceType": "Encounter", "id": "89284",
        "serviceProvider": {"identifier": {"system": fhir.ODS_SYSTEM, "value": "B86001"}}}
    cards_of(client.post(VIEW, json=body, headers=anywhere.headers(VIEW)))
    (event,) = events(seeded)
    assert event.organisation == "B86001"


# ------------------------------------------------------------------------------ feedback
FEEDBACK = VIEW + "/feedback"


def shown_cards(client: Any, ehr: Client) -> dict[str, dict[str, Any]]:
    cards = cards_of(client.post(VIEW, json=patient_view(), headers=ehr.headers(VIEW)))
    return {c["source"]["topic"]["code"]: c for c in cards}


def outcomes(app: Any, prompt_id: str) -> list[PromptOutcome]:
    with app.extensions["mecc"].db.session() as session:
        return list(session.scalars(select(PromptOutcome).where(
            PromptOutcome.prompt_id == prompt_id).order_by(PromptOutcome.id)))


def status_of(app: Any, prompt_id: str) -> str:
    with app.extensions["mecc"].db.session() as session:
        return str(session.get(Prompt, prompt_id).status)


def send(client: Any, ehr: Client, body: dict[str, Any]) -> Any:
    return client.post(FEEDBACK, json=body, headers=ehr.headers(FEEDBACK))


def test_accepted_feedback_records_conversation_or_referral(seeded: Any, client: Any,
                                                            ehr: Client) -> None:
    cards = shown_cards(client, ehr)
    smoking, weight = cards["smoking"], cards["healthy_weight"]
    body = hooks("feedback-accepted.json")
    body["feedback"][0]["card"] = smoking["uuid"]  # its suggestion id is not one of ours
    response = send(client, ehr, body)
    assert response.status_code == 200
    assert status_of(seeded, smoking["uuid"]) == "conversation_had"
    body = hooks("feedback-accepted.json")
    body["feedback"][0]["card"] = weight["uuid"]
    body["feedback"][0]["acceptedSuggestions"] = [{"id": weight["suggestions"][0]["uuid"]}]
    assert send(client, ehr, body).status_code == 200
    (recorded,) = outcomes(seeded, weight["uuid"])
    assert recorded.outcome == "referred"
    assert recorded.service_id == "example-mcr-healthy-weight"
    assert recorded.recorded_by and recorded.recorded_by.startswith("cds:")


def test_overridden_feedback_records_the_matching_outcome(seeded: Any, client: Any,
                                                          ehr: Client) -> None:
    cards = shown_cards(client, ehr)
    smoking, weight = cards["smoking"], cards["healthy_weight"]
    body = hooks("feedback-overridden.json")
    body["feedback"][0]["card"] = smoking["uuid"]
    assert send(client, ehr, body).status_code == 200
    assert status_of(seeded, smoking["uuid"]) == "not_now"
    body = hooks("feedback-overridden-with-reason.json")
    body["feedback"][0]["card"] = weight["uuid"]
    assert send(client, ehr, body).status_code == 200
    (recorded,) = outcomes(seeded, weight["uuid"])
    assert recorded.outcome == "not_now"  # a reason from another system: not now
    assert "A comment entered by the clinician." in (recorded.note or "")
    declined = weight["overrideReasons"][2]
    assert declined["code"] == "declined-by-person"
    body["feedback"][0]["overrideReason"]["reason"] = declined
    body["feedback"][0]["outcomeTimestamp"] = "2021-01-01T00:00:00Z"
    assert send(client, ehr, body).status_code == 200
    assert status_of(seeded, weight["uuid"]) == "declined"


def test_the_same_feedback_twice_is_recorded_once(seeded: Any, client: Any,
                                                  ehr: Client) -> None:
    card = shown_cards(client, ehr)["smoking"]
    body = hooks("feedback-overridden.json")
    body["feedback"][0]["card"] = card["uuid"]
    assert send(client, ehr, body).get_json() == {"recorded": 1}
    assert send(client, ehr, body).get_json() == {"recorded": 0}
    assert len(outcomes(seeded, card["uuid"])) == 1


def test_feedback_on_an_unknown_card_is_404_and_records_nothing(seeded: Any, client: Any,
                                                                ehr: Client) -> None:
    card = shown_cards(client, ehr)["smoking"]
    body = hooks("feedback-overridden.json")
    body["feedback"].append(dict(body["feedback"][0], card=card["uuid"]))
    problem(send(client, ehr, body), 404)  # the fixture's own card uuid is unknown here
    assert outcomes(seeded, card["uuid"]) == []
    other = Client(seeded, organisation="B86001", iss="https://elsewhere.example/")
    body = hooks("feedback-overridden.json")
    body["feedback"][0]["card"] = card["uuid"]
    problem(client.post(FEEDBACK, json=body, headers=other.headers(FEEDBACK)), 404)


def test_feedback_needs_its_own_audience_and_a_valid_body(seeded: Any, client: Any,
                                                          ehr: Client) -> None:
    body = hooks("feedback-overridden.json")
    problem(client.post(FEEDBACK, json=body, headers=ehr.headers(VIEW)), 401)
    problem(client.post(FEEDBACK, json=body), 401)
    errors = problem(send(client, ehr, {"feedback": [{"card": "x"}]}), 422)["errors"]
    assert {"feedback[0].outcome", "feedback[0].outcomeTimestamp"} <= set(errors)


def test_the_cli_registers_and_lists_clients(seeded: Any, tmp_path: Path,
                                             monkeypatch: Any) -> None:
    from click.testing import CliRunner

    from mecc.cli import main

    runtime = seeded.extensions["mecc"]
    monkeypatch.setenv("MECC_DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("MECC_VAR_DIR", str(tmp_path))
    jwks = tmp_path / "jwks.json"
    jwks.write_text((FIXTURES / "cds-hooks" / "jwks-public.json").read_text())
    runner = CliRunner()
    added = runner.invoke(main, ["cds-clients", "add", "--iss", "https://fhir-ehr.example.com/",
                                 "--jwks", str(jwks), "--organisation", "y02345"])
    assert added.exit_code == 0, added.output
    assert added.output.startswith("added https://fhir-ehr.example.com/ (Y02345)")
    listed = runner.invoke(main, ["cds-clients", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["iss"]: r for r in json.loads(listed.output)}
    assert rows["https://fhir-ehr.example.com/"]["kids"] == ["example-kid"]
    again = runner.invoke(main, ["cds-clients", "add", "--iss", "https://fhir-ehr.example.com/",
                                 "--jwks", str(jwks), "--organisation", "*"])
    assert again.exit_code == 0 and again.output.startswith("updated")
    private = dict(json.loads(jwks.read_text())["keys"][0], d="secret")
    jwks.write_text(json.dumps({"keys": [private]}))
    refused = runner.invoke(main, ["cds-clients", "add", "--iss", "https://x.example/",
                                   "--jwks", str(jwks), "--organisation", "Y02345"])
    assert refused.exit_code != 0 and "private" in refused.output
