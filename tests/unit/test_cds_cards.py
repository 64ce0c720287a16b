"""CDS Hooks pieces without a server: the spec's JWT example, discovery, cards, feedback.

The HL7 examples in shared/fixtures/cds-hooks are never edited; variants are built here.
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mecc.interop import cds
from mecc.platform.errors import NotFound, Unauthorized, ValidationFailed
from mecc.store.models import Prompt

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("MECC_SHARED_FIXTURES", ROOT.parent / "shared" / "fixtures"))
SPEC_AUD = "https://cds.example.org/cds-services/some-service"
SPEC_ISS = "https://fhir-ehr.example.com/"
CARD_KEYS = {"uuid", "summary", "detail", "indicator", "source", "suggestions",
             "selectionBehavior", "overrideReasons", "links"}


def hooks(name: str) -> Any:
    text = (FIXTURES / "cds-hooks" / name).read_text()
    return text.strip() if name.endswith(".txt") else json.loads(text)


# ------------------------------------------------------------------------------ the spec's JWT
def spec_keys() -> dict[str | None, cds.ClientKey]:
    return cds.parse_jwks(hooks("jwks-public.json"))


def test_the_spec_example_jwt_verifies_with_its_public_jwks_at_its_own_time() -> None:
    token = hooks("jwt-example.txt")
    expected = hooks("jwt-example-header-payload.json")
    # Time frozen one minute before the example's exp; the 2011 iat is then years old, so
    # the age limit is off for this one check only.
    frozen = expected["payload"]["exp"] - 60
    claims = cds.verify_jwt(token, spec_keys(), issuer=SPEC_ISS, audience=SPEC_AUD,
                            now=frozen, max_age=None)
    assert claims == expected["payload"]
    assert jwt.get_unverified_header(token) == expected["header"]


def test_the_spec_example_jwt_is_refused_today_and_elsewhere() -> None:
    token = hooks("jwt-example.txt")
    with pytest.raises(Unauthorized, match="expired"):
        cds.verify_jwt(token, spec_keys(), issuer=SPEC_ISS, audience=SPEC_AUD)
    frozen = 1422568860 - 60
    with pytest.raises(Unauthorized, match="aud"):
        cds.verify_jwt(token, spec_keys(), issuer=SPEC_ISS, max_age=None, now=frozen,
                       audience="https://cds.example.org/cds-services")
    with pytest.raises(Unauthorized, match="iss"):
        cds.verify_jwt(token, spec_keys(), issuer="https://other.example/", max_age=None,
                       now=frozen, audience=SPEC_AUD)
    with pytest.raises(Unauthorized, match="issued more than"):
        cds.verify_jwt(token, spec_keys(), issuer=SPEC_ISS, audience=SPEC_AUD, now=frozen)
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    with pytest.raises(Unauthorized, match="signature"):
        cds.verify_jwt(forged, spec_keys(), issuer=SPEC_ISS, audience=SPEC_AUD, now=frozen,
                       max_age=None)


# ------------------------------------------------------------------------------ fresh tokens
def es384_keys(kid: str = "k1") -> tuple[Any, dict[str, Any]]:
    private = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    public.update({"kid": kid, "alg": "ES384", "use": "sig"})
    return private, {"keys": [public]}


def mint(private: Any, *, alg: str = "ES384", kid: str | None = "k1", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": "https://ehr.example/", "aud": "https://mecc.example/cds-services/x",
               "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(payload, private, algorithm=alg, headers=headers)


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    return cds.verify_jwt(token, cds.parse_jwks(jwks), issuer="https://ehr.example/",
                          audience="https://mecc.example/cds-services/x")


def test_a_fresh_es384_token_verifies_and_an_array_aud_is_fine() -> None:
    private, jwks = es384_keys()
    assert verify(mint(private), jwks)["iss"] == "https://ehr.example/"
    assert verify(mint(private, aud=["https://mecc.example/cds-services/x"]), jwks)


def test_rs384_and_a_single_key_without_kid() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    assert verify(mint(private, alg="RS384", kid=None), {"keys": [public]})


@pytest.mark.parametrize(("claims", "message"), [
    ({"exp": int(time.time()) - 120}, "expired"),
    ({"iat": int(time.time()) - 3600}, "issued more than"),
    ({"iat": int(time.time()) + 3600}, "future"),
    ({"jti": None}, "jti"),
    ({"exp": None}, "exp"),
    ({"aud": "https://mecc.example/cds-services/y"}, "aud"),
    ({"iss": "https://evil.example/"}, "iss"),
    ({"nbf": int(time.time()) + 3600}, "nbf"),
])
def test_claims_that_are_refused(claims: dict[str, Any], message: str) -> None:
    private, jwks = es384_keys()
    with pytest.raises(Unauthorized, match=message):
        verify(mint(private, **claims), jwks)


def test_none_and_hmac_and_unknown_kids_and_other_keys_are_refused() -> None:
    private, jwks = es384_keys()
    unsigned = jwt.encode({"iss": "https://ehr.example/"}, None, algorithm="none",
                          headers={"kid": "k1"})
    with pytest.raises(Unauthorized, match="none"):
        verify(unsigned, jwks)
    hmac = jwt.encode({"iss": "x"}, "a-shared-secret-that-is-long-enough-for-hs256",
                      algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(Unauthorized, match="Symmetric"):
        verify(hmac, jwks)
    with pytest.raises(Unauthorized, match="kid"):
        verify(mint(private, kid="other"), jwks)
    stranger, _ = es384_keys()
    with pytest.raises(Unauthorized, match="signature"):
        verify(mint(stranger), jwks)
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Unauthorized):  # registered for ES384, signed ES256
        verify(mint(p256, alg="ES256"), jwks)


@pytest.mark.parametrize(("jwks", "message"), [
    ({}, "keys"),
    ({"keys": []}, "keys"),
    ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "symmetric"),
    ({"keys": ["x"]}, "object"),
])
def test_jwks_that_cannot_be_registered(jwks: Any, message: str) -> None:
    with pytest.raises(cds.JwksError, match=message):
        cds.parse_jwks(jwks)


def test_private_keys_and_ambiguous_sets_are_refused() -> None:
    private, jwks = es384_keys()
    with_private = copy.deepcopy(jwks)
    with_private["keys"][0]["d"] = "secret"
    with pytest.raises(cds.JwksError, match="private"):
        cds.parse_jwks(with_private)
    _, second = es384_keys()
    pair = {"keys": [jwks["keys"][0] | {"kid": None}, second["keys"][0]]}
    with pytest.raises(cds.JwksError):
        cds.parse_jwks(pair)
    twice = {"keys": [jwks["keys"][0], second["keys"][0] | {"kid": "k1"}]}
    with pytest.raises(cds.JwksError, match="twice"):
        cds.parse_jwks(twice)


# ------------------------------------------------------------------------------ discovery
def test_discovery_has_the_shape_of_the_spec_example() -> None:
    spec = hooks("discovery-response.json")
    allowed = set().union(*(s.keys() for s in spec["services"]))
    ours = cds.discovery()
    assert set(ours) == set(spec)
    assert {s["id"]: s["hook"] for s in ours["services"]} == {
        "mecc-encounter-start": "encounter-start", "mecc-patient-view": "patient-view"}
    for service in ours["services"]:
        assert set(service) <= allowed
        assert {"hook", "title", "description", "id", "prefetch"} <= set(service)
        assert all(isinstance(v, str) for v in service["prefetch"].values())
        prefetch = service["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        # No status filter on Conditions, and paused medicines fetched too: an absence rule
        # must see every diagnosis and treatment that could contradict it.
        assert prefetch["conditions"] == (
            "Condition?patient={{context.patientId}}")
        assert prefetch["medications"].endswith("&status=active,on-hold")
        assert prefetch["medicationRequests"].endswith("&status=active,on-hold")
        assert prefetch["observations"].startswith(
            "Observation?patient={{context.patientId}}&code=72166-2,39156-5,")
        assert prefetch["observations"].endswith("&_sort=-date")
        for code in ("85354-9", "4548-4", "59261-8", "55758-7", "75626-2", "75624-7"):
            assert code in prefetch["observations"]
    start = next(s for s in ours["services"] if s["hook"] == "encounter-start")
    assert start["prefetch"]["encounter"] == "Encounter/{{context.encounterId}}"


# ------------------------------------------------------------------------------ cards
def prompt(**changes: Any) -> Prompt:
    values: dict[str, Any] = dict(
        id=str(uuid.uuid4()), event_id=str(uuid.uuid4()), source="s", person_id="p",
        organisation="Y02345", setting="general_practice", rule_key="smoking-very-brief-advice",
        rule_version=1, topic="smoking", kind="lifestyle_conversation", priority=90,
        indicator="warning", summary="Current smoker: offer very brief advice",
        detail="**Ask** - Advise - Act.",
        suggestions=[
            {"label": "Refer to Stop Smoking (example)", "service_id": "svc-1",
             "name": "Stop Smoking (example)",
             "referral_url": "https://example.org/stop/refer"},
            {"label": "Refer to a local stop smoking service", "service_id": None,
             "service_type": "stop_smoking"}],
        sources=[{"label": "NICE NG209", "url": "https://www.nice.org.uk/guidance/ng209"},
                 {"label": "NCSCT", "url": "https://www.ncsct.co.uk/"}],
        status="new", contact_at=datetime.now(UTC))
    values.update(changes)
    return Prompt(**values)


def test_a_card_has_the_spec_card_shape() -> None:
    p = prompt()
    card = cds.card_for(p, "Smoker - very brief advice on stopping")
    spec = hooks("card-response.json")
    assert set(card) <= CARD_KEYS
    for spec_card in spec["cards"]:
        assert set(spec_card) <= CARD_KEYS
    assert card["uuid"] == p.id
    assert card["summary"] == p.summary and len(card["summary"]) < 140
    assert card["detail"] == p.detail
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"] == {
        "label": "MECC Prompts: Smoker - very brief advice on stopping",
        "url": "https://www.nice.org.uk/guidance/ng209",
        "topic": {"system": cds.TOPIC_SYSTEM, "code": "smoking", "display": "Smoking"}}
    assert set(card["source"]) <= set().union(*(c["source"].keys() for c in spec["cards"])) \
        | {"topic"}
    assert card["selectionBehavior"] == "at-most-one"
    assert [s["label"] for s in card["suggestions"]] == [
        "Refer to Stop Smoking (example)", "Refer to a local stop smoking service"]
    assert all(uuid.UUID(s["uuid"]) for s in card["suggestions"])
    assert card["suggestions"][0]["uuid"] == cds.suggestion_uuid(p.id, 0)  # stable
    assert card["links"] == [{"label": "Stop Smoking (example): referral",
                              "url": "https://example.org/stop/refer", "type": "absolute"}]
    spec_link_keys = set().union(*(link.keys() for link in spec["cards"][0]["links"]))
    assert all(set(link) <= spec_link_keys for link in card["links"])
    reasons = card["overrideReasons"]
    assert [r["code"] for r in reasons] == ["not-now", "not-appropriate", "declined-by-person",
                                            "already-addressed"]
    assert all(set(r) == {"system", "code", "display"} and r["display"] for r in reasons)


def test_a_card_without_suggestions_has_no_selection_behaviour() -> None:
    card = cds.card_for(prompt(suggestions=[], detail="", sources=[]), "Raised blood pressure")
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "links" not in card and "detail" not in card
    assert "url" not in card["source"]


def test_summaries_are_kept_under_140_characters() -> None:
    assert len(cds.fit_summary("x" * 140)) == 139
    assert cds.fit_summary("short") == "short"


# ------------------------------------------------------------------------------ feedback
def test_the_spec_feedback_examples_parse() -> None:
    (accepted,) = cds.parse_feedback(hooks("feedback-accepted.json"))
    assert accepted.outcome == "accepted"
    assert accepted.accepted == ("e56e1945-20b3-4393-8503-a1a20fd73152",)
    (overridden,) = cds.parse_feedback(hooks("feedback-overridden.json"))
    assert overridden.outcome == "overridden" and overridden.reason is None
    (reasoned,) = cds.parse_feedback(hooks("feedback-overridden-with-reason.json"))
    assert reasoned.reason == {"code": "d7ecf885",
                               "system": "https://example.com/cds-hooks/override-reason-system"}
    assert reasoned.comment == "A comment entered by the clinician."


@pytest.mark.parametrize(("body", "path"), [
    ({}, "feedback"),
    ({"feedback": []}, "feedback"),
    ({"feedback": [{"outcome": "accepted", "outcomeTimestamp": "2021-12-11T10:05:31Z"}]},
     "feedback[0].card"),
    ({"feedback": [{"card": "c", "outcome": "maybe",
                    "outcomeTimestamp": "2021-12-11T10:05:31Z"}]}, "feedback[0].outcome"),
    ({"feedback": [{"card": "c", "outcome": "accepted"}]}, "feedback[0].outcomeTimestamp"),
    ({"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}]},
     "feedback[0].outcomeTimestamp"),
    ({"feedback": [{"card": "c", "outcome": "overridden", "overrideReason": {"reason": "x"},
                    "outcomeTimestamp": "2021-12-11T10:05:31Z"}]},
     "feedback[0].overrideReason.reason"),
])
def test_malformed_feedback_names_the_field(body: Any, path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        cds.parse_feedback(body)
    assert path in caught.value.errors


def feedback_item(**changes: Any) -> cds.Feedback:
    values: dict[str, Any] = dict(card="c", outcome="overridden", accepted=(), reason=None,
                                  comment=None, timestamp="2021-12-11T10:05:31Z")
    values.update(changes)
    return cds.Feedback(**values)


@pytest.mark.parametrize(("item", "outcome"), [
    (feedback_item(), "not_now"),
    (feedback_item(reason={"system": cds.OVERRIDE_REASON_SYSTEM, "code": "not-now"}),
     "not_now"),
    (feedback_item(reason={"system": cds.OVERRIDE_REASON_SYSTEM, "code": "not-appropriate"}),
     "not_appropriate"),
    (feedback_item(reason={"system": cds.OVERRIDE_REASON_SYSTEM,
                           "code": "declined-by-person"}), "declined"),
    (feedback_item(reason={"system": cds.OVERRIDE_REASON_SYSTEM,
                           "code": "already-addressed"}), "conversation_had"),
    (feedback_item(reason={"system": "https://other.example", "code": "declined-by-person"}),
     "not_now"),
    (feedback_item(outcome="accepted", accepted=("not-one-of-ours",)), "conversation_had"),
])
def test_feedback_outcomes(item: cds.Feedback, outcome: str) -> None:
    assert cds.outcome_for(item, prompt())["outcome"] == outcome


def test_an_accepted_referral_suggestion_records_referred_with_its_service() -> None:
    p = prompt()
    body = cds.outcome_for(feedback_item(outcome="accepted",
                                         accepted=(cds.suggestion_uuid(p.id, 0),)), p)
    assert body["outcome"] == "referred" and body["service_id"] == "svc-1"
    generic = cds.outcome_for(feedback_item(outcome="accepted",
                                            accepted=(cds.suggestion_uuid(p.id, 1),)), p)
    assert generic["outcome"] == "referred" and "service_id" not in generic
    commented = cds.outcome_for(feedback_item(comment="Not today, busy"), p)
    assert commented["note"].endswith(": Not today, busy")


# ------------------------------------------------------------------------------ hook requests
def request_body(**prefetch: Any) -> dict[str, Any]:
    body = hooks("request-patient-view.json")
    if prefetch:
        body["prefetch"] = prefetch
    return body


def test_the_spec_request_parses_and_its_patient_is_found_under_any_key() -> None:
    svc = cds.SERVICES["mecc-patient-view"]
    req = cds.parse_hook_request(request_body(), svc)
    assert req.hook_instance == "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    assert "fhirAuthorization" not in req.body
    resources, ignored = cds.hook_resources(req)
    assert [(r.type, r.id) for r in resources] == [("Patient", "1288992"),
                                                   ("Encounter", "89284")]
    assert resources[1].synthetic and ignored == []


def test_searchset_bundles_are_flattened_and_operation_outcomes_noted() -> None:
    patient = hooks("request-patient-view.json")["prefetch"]["patientToGreet"]
    searchset = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "39156-5"}]}}},
        {"resource": {"resourceType": "OperationOutcome", "issue": []}}]}
    req = cds.parse_hook_request(request_body(
        patient=patient, observations=searchset, conditions=None,
        other={"resourceType": "Patient", "id": "someone-else"}),
        cds.SERVICES["mecc-patient-view"])
    resources, ignored = cds.hook_resources(req)
    assert [(r.type, r.path) for r in resources] == [
        ("Patient", "prefetch.patient"),
        ("Observation", "prefetch.observations.entry[0].resource"),
        ("Encounter", "context.encounterId")]
    assert len(ignored) == 2


@pytest.mark.parametrize("prefetch", [
    {}, {"patient": None}, {"patient": {"resourceType": "Patient", "id": "someone-else"}},
    {"patient": {"resourceType": "OperationOutcome"}}])
def test_without_the_patient_in_context_the_answer_is_412(prefetch: dict[str, Any]) -> None:
    body = request_body()
    body["prefetch"] = prefetch
    req = cds.parse_hook_request(body, cds.SERVICES["mecc-patient-view"])
    with pytest.raises(cds.PreconditionFailed) as caught:
        cds.hook_resources(req)
    assert caught.value.status == 412


@pytest.mark.parametrize(("change", "path"), [
    ({"hook": "order-sign"}, "hook"),
    ({"hookInstance": None}, "hookInstance"),
    ({"hookInstance": "has spaces"}, "hookInstance"),
    ({"context": {"userId": "Practitioner/1"}}, "context.patientId"),
    ({"context": "x"}, "context"),
    ({"prefetch": []}, "prefetch"),
])
def test_malformed_hook_requests_name_the_field(change: dict[str, Any], path: str) -> None:
    body = request_body()
    body.update(change)
    with pytest.raises(ValidationFailed) as caught:
        cds.parse_hook_request(body, cds.SERVICES["mecc-patient-view"])
    assert path in caught.value.errors


def test_unknown_services_are_404() -> None:
    with pytest.raises(NotFound):
        cds.service("nope")


def test_the_audience_is_the_url_called() -> None:
    assert cds.expected_audience("http://localhost/cds-services/x", None,
                                 "/cds-services/x") == "http://localhost/cds-services/x"
    assert cds.expected_audience("http://10.0.0.5/cds-services/x", "https://mecc.example/",
                                 "/cds-services/x") == "https://mecc.example/cds-services/x"


def test_a_referral_suggestion_creates_a_draft_service_request_valid_in_fhir_r4() -> None:
    from fhir.resources.R4B.servicerequest import ServiceRequest

    p = prompt()
    card = cds.card_for(p, "Smoker - very brief advice on stopping")
    for suggestion, named in zip(card["suggestions"], (True, False), strict=True):
        (action,) = suggestion["actions"]
        assert action["type"] == "create" and action["description"]
        request = action["resource"]
        ServiceRequest.model_validate(request)  # R4B: ServiceRequest is R4's
        assert (request["status"], request["intent"]) == ("draft", "proposal")
        assert request["subject"] == {"reference": "Patient/p"}
        performer = request["performer"][0]
        assert ("identifier" in performer) is named
        assert request["code"]["coding"][0]["code"] == (
            "stop_smoking" if not named else "smoking")
    first = card["suggestions"][0]["actions"][0]["resource"]
    assert first["performer"][0] == {
        "display": "Stop Smoking (example)",
        "identifier": {"system": "https://mecc-prompts.example/fhir/service-id",
                       "value": "svc-1"}}
