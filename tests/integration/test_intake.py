"""POST /api/v1/events: validation edges, idempotency, outages and the NHS number's privacy.

Every case goes through the real app on the real database (SQLite and PostgreSQL); the fact
edges are generated from config/facts.yaml, so a fact added there is tested without a change here.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import select

from mecc.api import create_app
from mecc.clinical.catalogue import load_catalogue
from mecc.intake.pseudonym import person_key
from mecc.platform.db import Base
from mecc.store.models import Event
from mecc.views import auth
from tests.support.factories import add_key, assert_problem, auth_header, make_event
from tests.support.stack import TEST_REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "config")
SENT = CATALOGUE.sent_facts
NUMERIC = {n: f for n, f in SENT.items() if f.type in ("int", "double")}
INTS = {n: f for n, f in SENT.items() if f.type == "int"}
BOOLS = [n for n, f in SENT.items() if f.type == "bool"]
ENUMS = {n: f.values for n, f in SENT.items() if f.type == "string" and f.values}
DERIVED = {n: f for n, f in CATALOGUE.facts.items() if not f.is_sent}
URL = "/api/v1/events"
PSEUDONYM_KEY = "test-pseudonym-key"  # the conftest settings
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_UK = "http://hl7.org/fhir/sid/icd-10-uk"


# ------------------------------------------------------------------------------ helpers
def set_path(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set a dotted path (list indices as digits) in an event body; returns the body."""
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


def stored(app: Any) -> list[Event]:
    with app.extensions["mecc"].db.session() as session:
        return list(session.scalars(select(Event).order_by(Event.received_at)))


@pytest.fixture
def key(make_key: Callable[..., str]) -> str:
    return make_key()


class Refusals:
    """One SQLite app shared by the tests of refused input: validation never reaches the
    database, so these run once rather than per backend, and must leave it empty."""

    def __init__(self, application: Any, token: str) -> None:
        self.app, self.token = application, token
        self.client = application.test_client()

    def post(self, body: Any) -> Any:
        return self.client.post(URL, json=body, headers=auth_header(self.token))

    def raw(self, data: str, content_type: str = "application/json") -> Any:
        return self.client.post(URL, data=data, headers={**auth_header(self.token),
                                                         "Content-Type": content_type})

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=auth_header(self.token))


@pytest.fixture(scope="module")
def shared_app(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("refusals")
    shutil.copyfile(sqlite_template, tmp / "mecc.platform.db")
    application = _app_for(f"sqlite:///{tmp / 'mecc.platform.db'}", tmp)
    application.config["TESTING"] = True
    yield application
    auth.clear_cache()
    application.extensions["mecc"].db.dispose()


@pytest.fixture
def refused(shared_app: Any) -> Iterator[Refusals]:
    refusals = Refusals(shared_app, _key_in(shared_app))
    yield refusals
    assert stored(shared_app) == [], "a refused request stored an event"


@pytest.fixture
def post(client: Any, key: str) -> Callable[..., Any]:
    def send(body: Any) -> Any:
        return client.post(URL, json=body, headers=auth_header(key))
    return send


def nhs_with_check_digit_ten() -> str:
    """A 9-digit stem whose modulus-11 check digit would be 10 (so no valid number exists)."""
    for n in range(100_000_000, 100_100_000):
        stem = str(n)
        total = sum(int(d) * w for d, w in zip(stem, range(10, 1, -1), strict=True))
        if 11 - total % 11 == 10:
            return stem + "0"
    raise AssertionError("no stem found")


# ------------------------------------------------------------------------------ the happy path
def test_valid_event_is_accepted_and_stored_as_queued(app: Any, post: Any) -> None:
    body = make_event()
    response = post(body)

    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    event_uuid = str(uuid.UUID(answer["id"]))
    assert answer == {
        "id": event_uuid, "event_id": body["event_id"], "source": "emis-web",
        "status": "queued",
        "links": {"self": f"/api/v1/events/{event_uuid}",
                  "prompts": f"/api/v1/prompts?event={event_uuid}"},
    }
    [row] = stored(app)
    assert row.id == event_uuid and row.status == "queued"
    assert (row.organisation, row.setting, row.staff_role) == ("Y02345", "general_practice",
                                                               "practice_nurse")
    assert row.payload["facts"] == body["facts"]
    assert "nhs_number" not in row.payload["person"]
    assert row.person_key == person_key("9434765919", PSEUDONYM_KEY)


# ------------------------------------------------------------------------------ required fields
@pytest.mark.parametrize("field", ["event_id", "source", "occurred_at", "organisation",
                                   "setting", "person"])
def test_each_missing_required_field_is_named(refused: Refusals, field: str) -> None:
    body = make_event()
    del body[field]

    problem = assert_problem(refused.post(body), 422, field)

    assert list(problem["errors"]) == [field]
    assert field in problem["detail"]


def test_missing_required_field_is_named_on_each_backend(app: Any, post: Any) -> None:
    body = make_event()
    del body["occurred_at"]
    assert_problem(post(body), 422, "occurred_at")
    assert stored(app) == []


def test_every_missing_required_field_is_named_in_one_answer(refused: Refusals) -> None:
    assert_problem(refused.post({}), 422, "event_id", "source", "occurred_at", "organisation",
                   "setting", "person")


def test_person_id_is_required(refused: Refusals) -> None:
    body = make_event()
    del body["person"]["id"]
    assert_problem(refused.post(body), 422, "person.id")


def test_person_needs_age_or_birth_date(refused: Refusals) -> None:
    body = make_event(person={"id": "p-1", "sex": "male"})
    problem = assert_problem(refused.post(body), 422, "person.age", "person.birth_date")
    assert "person.age or person.birth_date" in problem["errors"]["person.age"][0]


@pytest.mark.parametrize("person", [{"id": "p-1", "age": 40},
                                    {"id": "p-1", "birth_date": "1980-05-06"}])
def test_age_or_birth_date_alone_is_enough(post: Any, person: dict[str, Any]) -> None:
    assert post(make_event(person=person)).status_code == 202


# ------------------------------------------------------------------------------ field edges
FIELD_CASES = [
    ("setting", "gp_surgery", "setting"),
    ("setting", None, "setting"),
    ("contact_type", "walk_in", "contact_type"),
    ("staff.role", "doctor", "staff.role"),
    ("staff.id", "st 991", "staff.id"),
    ("staff.team", "t" * 101, "staff.team"),
    ("organisation", "Y0", "organisation"),
    ("organisation", 12345, "organisation"),
    ("event_id", "ev 1", "event_id"),
    ("event_id", "e" * 201, "event_id"),
    ("event_id", "", "event_id"),
    ("event_id", "   ", "event_id"),
    ("event_id", 12345, "event_id"),
    ("source", "s" * 101, "source"),
    ("source", None, "source"),
    ("person.id", "p" * 101, "person.id"),
    ("person.age", 131, "person.age"),
    ("person.age", -1, "person.age"),
    ("person.age", "40", "person.age"),
    ("person.age", 40.5, "person.age"),
    ("person.age", True, "person.age"),
    ("person.birth_date", "1971-02-30", "person.birth_date"),
    ("person.birth_date", "02/04/1971", "person.birth_date"),
    ("person.sex", "f", "person.sex"),
    ("person.ethnicity_group", "South Asian", "person.ethnicity_group"),
    ("person.postcode_district", "M14 5AB", "person.postcode_district"),
    ("person.name", "Jane Doe", "person.name"),
    ("person", [], "person"),
    ("occurred_at", "2024-11-22T09:30:00", "occurred_at"),  # naive: no zone offset
    ("occurred_at", "yesterday", "occurred_at"),
    ("occurred_at", 1732262400, "occurred_at"),
    ("occurred_at", "0001-01-01T00:00:00+01:00", "occurred_at"),  # no UTC date exists
    ("conditions.0.display", "d" * 501, "conditions.0.display"),
    ("conditions.0.onset_date", "2999-01-01", "conditions.0.onset_date"),
    ("conditions", {"group": "copd"}, "conditions"),
    ("preferences.opted_out", "yes", "preferences.opted_out"),
    ("preferences.opted_out", 1, "preferences.opted_out"),
    ("preferences.declined_topics", "alcohol", "preferences.declined_topics"),
    ("preferences.declined_topics", ["Alcohol!"], "preferences.declined_topics.0"),
    ("preferences.declined_topics", [f"topic_{i}" for i in range(31)],
     "preferences.declined_topics"),
    ("preferences.reason", "x", "preferences.reason"),
    ("callback_url", "not a url", "callback_url"),
    ("callback_url", "ftp://gp-system.example/hook", "callback_url"),
    ("callback_url", "https://gp.example/" + "a" * 2048, "callback_url"),
    ("patient", {"id": "x"}, "patient"),
    ("staff", None, "staff"),
    ("staff.name", "Dr Who", "staff.name"),
    ("facts", [1], "facts"),
    ("facts", None, "facts"),
]


@pytest.mark.parametrize(("path", "value", "named"), FIELD_CASES,
                         ids=[f"{p}={str(v)[:20]}" for p, v, _ in FIELD_CASES])
def test_invalid_field_is_named_by_its_dotted_path(refused: Refusals, path: str, value: Any,
                                                   named: str) -> None:
    problem = assert_problem(refused.post(set_path(make_event(), path, value)), 422, named)
    assert problem["type"] == "urn:mecc:problem:validation-error"


def test_invalid_field_is_refused_on_each_backend(app: Any, post: Any) -> None:
    assert_problem(post(make_event(setting="gp_surgery")), 422, "setting")
    assert stored(app) == []


def test_unknown_top_level_field_says_so(refused: Refusals) -> None:
    problem = assert_problem(refused.post(make_event(patient_name="x")), 422, "patient_name")
    assert problem["errors"]["patient_name"] == ["Unknown field."]


def test_enum_typo_gets_a_did_you_mean(refused: Refusals) -> None:
    problem = assert_problem(refused.post(make_event(setting="general_practise")), 422,
                             "setting")
    assert "Did you mean 'general_practice'?" in problem["errors"]["setting"][0]


# ------------------------------------------------------------------------------ facts
def _edge(spec: Any, which: str) -> float:
    return {"below": spec.min - 1, "min": spec.min, "max": spec.max, "above": spec.max + 1}[which]


@pytest.mark.parametrize("which", ["below", "above"])
def test_every_numeric_fact_out_of_range_is_named_in_one_answer(app: Any, post: Any,
                                                                which: str) -> None:
    facts = {name: _edge(spec, which) for name, spec in NUMERIC.items()}
    problem = assert_problem(post(make_event(facts=facts)), 422)
    assert set(problem["errors"]) == {f"facts.{name}" for name in NUMERIC}
    for name, spec in NUMERIC.items():
        assert problem["errors"][f"facts.{name}"] == [
            f"Must be between {spec.min} and {spec.max}."]
    assert stored(app) == []


@pytest.mark.parametrize("which", ["min", "max"])
def test_every_numeric_fact_at_its_limit_is_accepted(app: Any, post: Any, which: str) -> None:
    facts = {name: _edge(spec, which) for name, spec in NUMERIC.items()}
    assert post(make_event(facts=facts)).status_code == 202
    [row] = stored(app)
    assert row.payload["facts"] == facts


@pytest.mark.parametrize("bad", ["6", True, [6], {"value": 6}])
def test_numeric_facts_refuse_non_numbers(refused: Refusals, bad: Any) -> None:
    problem = assert_problem(refused.post(make_event(facts=dict.fromkeys(NUMERIC, bad))), 422)
    assert set(problem["errors"]) == {f"facts.{name}" for name in NUMERIC}


def test_int_facts_refuse_fractions(refused: Refusals) -> None:
    fractional = {name: spec.min + 0.5 for name, spec in INTS.items()}
    problem = assert_problem(refused.post(make_event(facts=fractional)), 422)
    assert set(problem["errors"]) == {f"facts.{name}" for name in INTS}


def test_int_facts_take_whole_floats_as_ints(app: Any, post: Any) -> None:
    whole = {name: float(spec.min) for name, spec in INTS.items()}
    assert post(make_event(facts=whole)).status_code == 202
    [row] = stored(app)
    assert all(type(row.payload["facts"][n]) is int for n in INTS)


def test_string_facts_refuse_values_not_in_the_catalogue(refused: Refusals) -> None:
    facts = {name: values[0].upper() + "x" for name, values in ENUMS.items()}
    problem = assert_problem(refused.post(make_event(facts=facts)), 422)
    assert set(problem["errors"]) == {f"facts.{name}" for name in ENUMS}
    for name, values in ENUMS.items():
        assert all(v in problem["errors"][f"facts.{name}"][0] for v in values)


def test_string_facts_accept_every_catalogue_value(app: Any, post: Any) -> None:
    longest = max(len(v) for v in ENUMS.values())
    for i in range(longest):
        facts = {name: values[i % len(values)] for name, values in ENUMS.items()}
        assert post(make_event(facts=facts)).status_code == 202
    assert len(stored(app)) == longest


@pytest.mark.parametrize("bad", [1, 0, "true", "false", "yes"])
def test_bool_facts_refuse_anything_but_true_and_false(refused: Refusals, bad: Any) -> None:
    problem = assert_problem(refused.post(make_event(facts=dict.fromkeys(BOOLS, bad))), 422)
    assert set(problem["errors"]) == {f"facts.{name}" for name in BOOLS}


def test_bool_facts_accept_true_and_false(app: Any, post: Any) -> None:
    assert post(make_event(facts=dict.fromkeys(BOOLS, True))).status_code == 202
    assert post(make_event(facts=dict.fromkeys(BOOLS, False))).status_code == 202
    assert [r.payload["facts"] for r in stored(app)] == [dict.fromkeys(BOOLS, True),
                                                          dict.fromkeys(BOOLS, False)]


def test_unknown_fact_is_named_with_a_did_you_mean(refused: Refusals) -> None:
    problem = assert_problem(refused.post(make_event(facts={"smokng_status": "current",
                                                    "qqqqqq": 1})),
                             422, "facts.smokng_status", "facts.qqqqqq")
    assert problem["errors"]["facts.smokng_status"] == [
        "Unknown fact. Did you mean 'smoking_status'?"]
    assert problem["errors"]["facts.qqqqqq"] == ["Unknown fact."]


def test_unknown_fact_is_reported_with_the_other_fact_errors(refused: Refusals) -> None:
    assert_problem(refused.post(make_event(facts={"bmi": 5, "audit_cc": 3})), 422,
                   "facts.bmi", "facts.audit_cc")


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_derived_fact_in_facts_is_refused(refused: Refusals, name: str) -> None:
    spec = DERIVED[name]
    value = spec.values[0] if spec.values else (40 if spec.type == "int" else "x")
    problem = assert_problem(refused.post(make_event(facts={name: value})), 422, f"facts.{name}")
    assert "derived from the event" in problem["errors"][f"facts.{name}"][0]


def test_null_facts_are_dropped_not_stored(app: Any, client: Any, key: str, post: Any) -> None:
    facts = {"bmi": None, "audit_c": 6, "is_carer": None, "smoking_status": None}
    response = post(make_event(facts=facts))
    assert response.status_code == 202

    [row] = stored(app)
    assert row.payload["facts"] == {"audit_c": 6}
    detail = client.get(f"{URL}/{row.id}", headers=auth_header(key)).get_json()
    assert detail["facts"] == {"audit_c": 6}


def test_nan_is_not_a_number(refused: Refusals) -> None:
    raw = json.dumps(make_event(facts={"bmi": float("nan")}))  # Python writes NaN
    assert_problem(refused.raw(raw), 422, "facts.bmi")


# ------------------------------------------------------------------------------ times
def test_occurred_at_more_than_five_minutes_ahead_is_refused(refused: Refusals) -> None:
    ahead = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    problem = assert_problem(refused.post(make_event(occurred_at=ahead)), 422, "occurred_at")
    assert "5 minutes" in problem["errors"]["occurred_at"][0]


def test_occurred_at_slightly_ahead_is_clock_skew(post: Any) -> None:
    ahead = (datetime.now(UTC) + timedelta(minutes=3)).isoformat()
    assert post(make_event(occurred_at=ahead)).status_code == 202


def test_naive_occurred_at_asks_for_an_offset(refused: Refusals) -> None:
    problem = assert_problem(refused.post(make_event(occurred_at="2024-11-22T09:30:00")), 422,
                             "occurred_at")
    assert "zone offset" in problem["errors"]["occurred_at"][0]


def test_old_events_are_accepted_and_stored_in_utc(app: Any, client: Any, key: str,
                                                   post: Any) -> None:
    response = post(make_event(occurred_at="1998-03-01T10:30:00+05:30",
                               person={"id": "p-1", "birth_date": "1950-01-01"}, conditions=[]))
    assert response.status_code == 202

    [row] = stored(app)
    assert row.occurred_at == datetime(1998, 3, 1, 5, 0, tzinfo=UTC)
    detail = client.get(f"{URL}/{row.id}", headers=auth_header(key)).get_json()
    assert detail["occurred_at"] == "1998-03-01T05:00:00Z"


def test_birth_date_after_occurred_at_is_refused(post: Any) -> None:
    person = {"id": "p-1", "birth_date": "2020-01-02"}
    problem = assert_problem(post(make_event(occurred_at="2020-01-01T23:00:00+00:00",
                                             person=person, conditions=[])),
                             422, "person.birth_date")
    assert problem["errors"]["person.birth_date"] == ["Must not be after occurred_at."]
    # Born on the day of the contact is fine.
    person["birth_date"] = "2020-01-01"
    assert post(make_event(occurred_at="2020-01-01T23:00:00+00:00", person=person,
                           conditions=[])).status_code == 202


# ------------------------------------------------------------------------------ NHS number
@pytest.mark.parametrize("raw", ["9434765919", "943 476 5919", "943-476-5919", "4010232137"])
def test_valid_nhs_number_is_kept_only_as_a_keyed_hash(app: Any, post: Any, raw: str) -> None:
    body = make_event()
    body["person"]["nhs_number"] = raw
    assert post(body).status_code == 202

    [row] = stored(app)
    digits = raw.replace(" ", "").replace("-", "")
    assert row.person_key == person_key(digits, PSEUDONYM_KEY)
    assert digits not in json.dumps(row.payload)


@pytest.mark.parametrize("raw", ["9434765918", "943476591", "94347659190", "943476591X",
                                 "", nhs_with_check_digit_ten(), 9434765919,
                                 "９４３４７６５９１９", "943476591²"])
def test_invalid_nhs_number_is_named_and_not_echoed(refused: Refusals, raw: Any) -> None:
    body = make_event()
    body["person"]["nhs_number"] = raw
    response = refused.post(body)

    assert_problem(response, 422, "person.nhs_number")
    if str(raw):
        assert str(raw) not in response.get_data(as_text=True)


# ------------------------------------------------------------------------------ conditions
def test_every_code_system_and_groups_are_accepted_and_kept(app: Any, post: Any) -> None:
    conditions = [
        {"system": SNOMED, "code": "44054006", "display": "Type 2 diabetes mellitus"},
        {"system": ICD10, "code": "E11.9"},
        {"system": ICD10_UK, "code": "J44.9", "onset_date": "2020-01-01"},
        {"group": "diabetes_type2"},
        {"system": SNOMED, "code": "123456"},  # maps to no group: kept and ignored
    ]
    assert post(make_event(conditions=conditions)).status_code == 202
    [row] = stored(app)
    assert [c.get("code", c.get("group")) for c in row.payload["conditions"]] == [
        "44054006", "E11.9", "J44.9", "diabetes_type2", "123456"]


CONDITION_CASES = [
    ([{"system": "http://loinc.org", "code": "1234-5"}], ["conditions.0.system"]),
    ([{"group": "copd"}, {"system": SNOMED, "code": "E11"}], ["conditions.1.code"]),
    ([{"system": SNOMED, "code": "0123456"}], ["conditions.0.code"]),
    ([{"system": SNOMED, "code": 44054006}], ["conditions.0.code"]),
    ([{"system": ICD10, "code": "123"}], ["conditions.0.code"]),
    ([{"system": ICD10_UK, "code": "J44.99999"}], ["conditions.0.code"]),
    ([{"system": SNOMED, "code": "4" * 21}], ["conditions.0.code"]),
    ([{"group": "diabetes_typo2"}], ["conditions.0.group"]),
    ([{"group": "copd", "system": SNOMED, "code": "13645005"}], ["conditions.0.group"]),
    ([{"display": "Diabetes"}], ["conditions.0.system", "conditions.0.code"]),
    ([{"system": SNOMED}], ["conditions.0.code"]),
    (["E11"], ["conditions.0"]),
    ([{"group": "copd", "severity": "high"}], ["conditions.0.severity"]),
]


@pytest.mark.parametrize(("conditions", "named"), CONDITION_CASES,
                         ids=[str(c)[:40] for c, _ in CONDITION_CASES])
def test_bad_condition_is_named_by_index(refused: Refusals, conditions: list[Any],
                                         named: list[str]) -> None:
    assert_problem(refused.post(make_event(conditions=conditions)), 422, *named)


def test_group_typo_gets_a_did_you_mean(refused: Refusals) -> None:
    body = make_event(conditions=[{"group": "diabetes_typo2"}])
    problem = assert_problem(refused.post(body), 422)
    assert "Did you mean 'diabetes_type2'?" in problem["errors"]["conditions.0.group"][0]


def test_icd10_cm_codes_and_medicines_are_accepted_and_kept(app: Any, post: Any) -> None:
    medications = [{"system": "https://dmd.nhs.uk", "code": "325278007",
                    "display": "Metformin 500mg tablets"},
                   {"system": SNOMED, "code": "3280711000001103"}]
    body = make_event(conditions=[{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                   "code": "E11.65"}], medications=medications)
    assert post(body).status_code == 202
    [row] = stored(app)
    assert row.payload["medications"] == medications
    assert row.payload["conditions"][0]["code"] == "E11.65"


MEDICATION_CASES = [
    ([{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}],
     ["medications.0.system"]),
    ([{"system": "https://dmd.nhs.uk", "code": "metformin"}], ["medications.0.code"]),
    ([{"system": "https://dmd.nhs.uk"}], ["medications.0.code"]),
    ([{"code": "325278007"}], ["medications.0.system"]),
    ([{"system": "https://dmd.nhs.uk", "code": "325278007"}] * 101, ["medications"]),
]


@pytest.mark.parametrize(("medications", "named"), MEDICATION_CASES,
                         ids=[str(m)[:40] for m, _ in MEDICATION_CASES])
def test_bad_medication_is_named(refused: Refusals, medications: list[Any],
                                 named: list[str]) -> None:
    assert_problem(refused.post(make_event(medications=medications)), 422, *named)


def test_fact_dates_are_kept_as_sent(app: Any, post: Any) -> None:
    dates = {"bmi": "2025-06-01", "phq2": "2026-01-05T09:30:00+01:00"}
    assert post(make_event(fact_dates=dates)).status_code == 202
    [row] = stored(app)
    assert row.payload["fact_dates"] == dates


FACT_DATE_CASES = [
    ({"bmii": "2025-06-01"}, ["fact_dates.bmii"]),
    ({"age": "2025-06-01"}, ["fact_dates.age"]),  # derived from the event: never dated
    ({"bmi": "01/06/2025"}, ["fact_dates.bmi"]),
    ({"bmi": "2025-06-01T09:30:00"}, ["fact_dates.bmi"]),  # no zone offset
    ({"bmi": 20250601}, ["fact_dates.bmi"]),
    ({"bmi": (datetime.now(UTC) + timedelta(days=2)).date().isoformat()}, ["fact_dates.bmi"]),
]


@pytest.mark.parametrize(("dates", "named"), FACT_DATE_CASES,
                         ids=[str(d)[:40] for d, _ in FACT_DATE_CASES])
def test_bad_fact_date_is_named(refused: Refusals, dates: dict[str, Any],
                                named: list[str]) -> None:
    assert_problem(refused.post(make_event(fact_dates=dates)), 422, *named)


def test_list_limits(app: Any, post: Any) -> None:
    # At most 100 distinct codes; a code listed again (another onset date) counts once, up to
    # 300 entries in all.
    def snomed(n: int) -> dict[str, str]:
        return {"system": "http://snomed.info/sct", "code": str(100000 + n)}

    hundred = [snomed(n) for n in range(100)]
    assert post(make_event(conditions=hundred + hundred[:50])).status_code == 202
    assert_problem(post(make_event(conditions=[*hundred, snomed(100)])), 422, "conditions")
    assert_problem(post(make_event(conditions=[snomed(0)] * 301)), 422, "conditions")

    thirty = [f"topic_{i}" for i in range(30)]
    assert post(make_event(preferences={"declined_topics": thirty})).status_code == 202
    assert_problem(post(make_event(preferences={"declined_topics": [*thirty, "one_more"]})),
                   422, "preferences.declined_topics")
    assert len(stored(app)) == 2


# ------------------------------------------------------------------------------ malformed bodies
def test_body_over_one_mebibyte_is_413(app: Any, client: Any, key: str) -> None:
    body = make_event()
    body["staff"]["team"] = "x" * (1024 * 1024)
    response = client.post(URL, json=body, headers=auth_header(key))
    assert_problem(response, 413)
    assert stored(app) == []


def test_malformed_json_is_400(refused: Refusals) -> None:
    problem = assert_problem(refused.raw('{"event_id": "ev-1",'), 400)
    assert "JSON" in problem["detail"]


def test_body_that_is_not_utf8_is_400(refused: Refusals) -> None:
    response = refused.client.post(URL, data=b'{"event_id": "\xff\xfe"}', headers={
        **auth_header(refused.token), "Content-Type": "application/json"})
    assert_problem(response, 400)


def test_deeply_nested_json_is_400_not_500(refused: Refusals) -> None:
    assert_problem(refused.raw("[" * 100_000 + "]" * 100_000), 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/xml"])
def test_non_json_content_type_is_415(refused: Refusals, content_type: str) -> None:
    assert_problem(refused.raw(json.dumps(make_event()), content_type), 415)


@pytest.mark.parametrize("raw", ["[]", '"event"', "null", "42"])
def test_json_that_is_not_an_object_is_422(refused: Refusals, raw: str) -> None:
    assert_problem(refused.raw(raw), 422, "body")


@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/api/v2/events",
                                  "/api/v1/events/not-a-uuid",
                                  f"/api/v1/events/{uuid.uuid4()}"])
def test_unknown_route_or_event_is_404_problem(refused: Refusals, path: str) -> None:
    assert_problem(refused.get(path), 404)


def test_unknown_route_is_404_problem_without_a_key(client: Any) -> None:
    assert_problem(client.get("/api/v1/nope"), 404)


def test_wrong_method_is_405_problem_with_allow(refused: Refusals) -> None:
    response = refused.get(URL)
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


# ------------------------------------------------------------------------------ idempotency
def test_same_event_twice_answers_the_original_result(app: Any, post: Any) -> None:
    body = make_event()
    first, second = post(body), post(body)

    assert (first.status_code, second.status_code) == (202, 200)
    assert second.get_json() == first.get_json()
    assert [r.id for r in stored(app)] == [first.get_json()["id"]]


def test_same_event_with_keys_in_another_order_is_the_same_event(app: Any, client: Any,
                                                                  key: str, post: Any) -> None:
    body = make_event()
    first = post(body)
    reordered = json.dumps(dict(reversed(list(body.items()))))
    second = client.post(URL, data=reordered, headers={**auth_header(key),
                                                       "Content-Type": "application/json"})
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.get_json()["id"] == first.get_json()["id"]
    assert len(stored(app)) == 1


def test_same_source_and_event_id_with_another_body_is_409(app: Any, post: Any) -> None:
    body = make_event()
    assert post(body).status_code == 202
    changed = {**body, "facts": {"smoking_status": "never"}}

    problem = assert_problem(post(changed), 409)
    assert body["event_id"] in problem["detail"]
    [row] = stored(app)
    assert row.payload["facts"]["smoking_status"] == "current"


def test_same_event_id_from_another_source_is_another_event(app: Any, post: Any) -> None:
    body = make_event()
    assert post(body).status_code == 202
    assert post({**body, "source": "systmone"}).status_code == 202
    assert len(stored(app)) == 2


def _race(app: Any, key: str, bodies: list[dict[str, Any]]) -> list[Any]:
    """POST every body at once, each from its own test client and thread."""
    barrier = threading.Barrier(len(bodies))

    def send(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        client = app.test_client()
        barrier.wait()
        response = client.post(URL, json=body, headers=auth_header(key))
        return response.status_code, json.loads(response.get_data(as_text=True))

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, bodies))


@pytest.mark.commits  # threads with connections of their own
def test_concurrent_identical_posts_store_one_event(app: Any, key: str) -> None:
    for _ in range(3):
        body = make_event()
        results = _race(app, key, [body] * 6)

        statuses = sorted(status for status, _ in results)
        assert statuses == [200] * 5 + [202], results
        assert len({answer["id"] for _, answer in results}) == 1
    assert len(stored(app)) == 3


@pytest.mark.commits  # threads with connections of their own
def test_concurrent_conflicting_posts_store_one_body(app: Any, key: str) -> None:
    one = make_event()
    other = {**one, "facts": {"smoking_status": "never"}}
    results = _race(app, key, [one, other] * 3)

    assert sorted(s for s, _ in results).count(202) == 1, results
    [row] = stored(app)
    winner = one if row.payload["facts"] == one["facts"] else other
    for body, (status, answer) in zip([one, other] * 3, results, strict=True):
        if body is winner:
            assert status in (200, 202) and answer["id"] == row.id
        else:
            assert status == 409 and answer["status"] == 409


# ------------------------------------------------------------------------------ outages
DEAD_DATABASES = ["postgresql+psycopg://postgres@127.0.0.1:1/mecc",
                  "sqlite:////nonexistent-directory/for/mecc.platform.db"]


def _app_for(database_url: str, tmp_path: Path, redis_url: str = TEST_REDIS_URL) -> Any:
    return create_app({"database_url": database_url, "redis_url": redis_url,
                       "var_dir": str(tmp_path), "secret_key": "test-secret-key",
                       "pseudonym_key": PSEUDONYM_KEY})


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def factory(database_url: str, redis_url: str = TEST_REDIS_URL) -> Any:
        made.append(_app_for(database_url, tmp_path, redis_url))
        return made[-1]

    yield factory
    for application in made:
        application.extensions["mecc"].db.dispose()


def _assert_unavailable(response: Any, started: float, within: float) -> None:
    elapsed = time.monotonic() - started
    problem = assert_problem(response, 503)
    assert problem["type"] == "urn:mecc:problem:service-unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert elapsed < within, f"took {elapsed:.1f}s"


@pytest.mark.parametrize("dead", DEAD_DATABASES, ids=["postgresql", "sqlite"])
def test_database_down_answers_503_with_retry_after(make_app: Any, dead: str) -> None:
    client = make_app(dead).test_client()
    token = "mecc_abcdefabcdef_" + "a" * 40  # well formed: the lookup reaches the database
    started = time.monotonic()
    response = client.post(URL, json=make_event(), headers=auth_header(token))
    _assert_unavailable(response, started, within=10)


def test_database_down_after_authentication_stores_nothing_and_answers_503(
        app: Any, client: Any, key: str, make_app: Any) -> None:
    assert client.post(URL, json=make_event(), headers=auth_header(key)).status_code == 202
    # The key is now in the auth cache, so the dead app reaches the insert itself.
    dead = make_app(DEAD_DATABASES[0]).test_client()
    body = make_event()
    started = time.monotonic()
    _assert_unavailable(dead.post(URL, json=body, headers=auth_header(key)), started, within=10)
    assert body["event_id"] not in [r.event_id for r in stored(app)]


def test_database_that_never_answers_gives_503_in_bounded_time(make_app: Any) -> None:
    # A listener that accepts connections and never speaks: a partitioned database.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        client = make_app(f"postgresql+psycopg://postgres@127.0.0.1:{port}/mecc").test_client()
        started = time.monotonic()
        response = client.post(URL, json=make_event(),
                               headers=auth_header("mecc_abcdefabcdef_" + "a" * 40))
        _assert_unavailable(response, started, within=10)


def _key_in(application: Any) -> str:
    return add_key(application.extensions["mecc"].db, name="t",
                   scopes=("events:write", "prompts:read")).key


def test_broker_down_still_accepts_and_stores_queued(database_url: str, make_app: Any) -> None:
    application = make_app(database_url, redis_url="redis://127.0.0.1:1/0")
    client, token = application.test_client(), _key_in(application)

    for _ in range(2):
        body = make_event()
        started = time.monotonic()
        response = client.post(URL, json=body, headers=auth_header(token))
        assert response.status_code == 202, response.get_json()
        assert time.monotonic() - started < 3
    # The breaker is open: later requests do not even try the dead broker.
    assert application.extensions["mecc"].publisher.is_open
    rows = stored(application)
    assert len(rows) == 2 and {r.status for r in rows} == {"queued"}


def test_broker_that_never_answers_does_not_hang_intake(sqlite_template: Path, tmp_path: Path,
                                                        make_app: Any) -> None:
    path = tmp_path / "mecc.platform.db"
    shutil.copyfile(sqlite_template, path)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        application = make_app(f"sqlite:///{path}", redis_url=f"redis://127.0.0.1:{port}/0")
        token = _key_in(application)
        started = time.monotonic()
        response = application.test_client().post(URL, json=make_event(),
                                                  headers=auth_header(token))
        elapsed = time.monotonic() - started
    assert response.status_code == 202
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert [r.status for r in stored(application)] == ["queued"]


# ------------------------------------------------------------------------------ privacy
NHS_A, NHS_B, NHS_BAD = "9434765919", "4010232137", "9434765918"


def _json_log_lines() -> tuple[io.StringIO, logging.Handler]:
    """The app's own JSON log formatter, writing to a buffer we can search."""
    formatter = next(h.formatter for h in logging.getLogger().handlers
                     if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter))
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    return buffer, handler


def test_nhs_number_is_never_stored_logged_or_echoed(app: Any, client: Any, key: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    buffer, handler = _json_log_lines()
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        emis = make_event()
        emis["person"]["nhs_number"] = "943 476 5919"
        systm = make_event(source="systmone")
        systm["person"]["nhs_number"] = NHS_A
        other = make_event(source="systmone")
        other["person"]["nhs_number"] = NHS_B
        bad = make_event()
        bad["person"]["nhs_number"] = NHS_BAD
        answers = [client.post(URL, json=b, headers=auth_header(key)) for b in (emis, systm)]
        batch = client.post(f"{URL}/batch", json={"events": [other, bad]},
                            headers=auth_header(key))
        rejected = client.post(URL, json=bad, headers=auth_header(key))
        details = [client.get(f"{URL}/{a.get_json()['id']}", headers=auth_header(key))
                   for a in answers]
    finally:
        root.removeHandler(handler)

    assert [a.status_code for a in answers] == [202, 202]
    assert [r["status"] for r in batch.get_json()["results"]] == ["accepted", "rejected"]
    assert rejected.status_code == 422
    forms = [NHS_A, NHS_B, NHS_BAD, "943 476 5919"]

    # The database: every column of every table.
    dumped: list[str] = []
    with app.extensions["mecc"].db.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(table.select()):
                dumped.extend(str(value) for value in row)
    assert dumped, "nothing was stored"
    database = "\n".join(dumped)
    # The logs: records as captured and as the JSON lines the app writes.
    logs = "\n".join([buffer.getvalue(), caplog.text,
                      *(str(r.__dict__) for r in caplog.records)])
    assert "request" in buffer.getvalue(), "the log capture saw nothing"
    responses = "\n".join(r.get_data(as_text=True)
                          for r in (*answers, batch, rejected, *details))
    for form in forms:
        assert form not in database
        assert form not in logs
        assert form not in responses
    assert all(d.status_code == 200 for d in details)
    assert all("nhs_number" not in d.get_json()["person"] for d in details)

    # Two sources, one NHS number: one person.
    rows = {(r.source, r.event_id): r for r in stored(app)}
    key_emis = rows[("emis-web", emis["event_id"])].person_key
    key_systm = rows[("systmone", systm["event_id"])].person_key
    key_other = rows[("systmone", other["event_id"])].person_key
    assert key_emis == key_systm == person_key(NHS_A, PSEUDONYM_KEY)
    assert key_other == person_key(NHS_B, PSEUDONYM_KEY) != key_emis
