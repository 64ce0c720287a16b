"""The ContactEvent schema built from config/: every field's edges, facts from the catalogue."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import marshmallow as ma
import pytest

from mecc.clinical.catalogue import load_catalogue
from mecc.intake.schemas import build_event_schemas
from mecc.platform.errors import flatten_errors
from tests.support.factories import make_event

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "config")
SCHEMA = build_event_schemas(CATALOGUE)
SENT = CATALOGUE.sent_facts
DERIVED = sorted(n for n, f in CATALOGUE.facts.items() if not f.is_sent)
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_UK = "http://hl7.org/fhir/sid/icd-10-uk"


def load(body: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = SCHEMA().load(body)
    return data


def errors(body: Any) -> dict[str, list[str]]:
    """The dotted-path errors for a body that must be refused."""
    with pytest.raises(ma.ValidationError) as caught:
        SCHEMA().load(body)
    return flatten_errors(caught.value.messages)


def with_facts(**facts: Any) -> dict[str, Any]:
    return make_event(facts=facts)


# ------------------------------------------------------------------------------ the whole event
def test_the_contract_example_loads_and_is_normalised() -> None:
    body = make_event(organisation="y02345")
    body["person"].update(nhs_number="943 476 5919", postcode_district="m14")
    data = load(body)
    assert data["organisation"] == "Y02345"
    assert data["person"]["nhs_number"] == "9434765919"
    assert data["person"]["postcode_district"] == "M14"
    assert data["person"]["birth_date"] == date(1971, 4, 2)
    assert data["occurred_at"].tzinfo is not None and data["occurred_at"].utcoffset() == \
        timedelta(0)
    assert data["facts"] == body["facts"]


def test_optional_parts_have_defaults() -> None:
    body = make_event()
    for name in ("facts", "conditions", "preferences", "staff", "contact_type"):
        del body[name]
    data = load(body)
    assert data["facts"] == {} and data["conditions"] == []
    assert data["preferences"] == {"opted_out": False, "declined_topics": []}
    assert "staff" not in data


@pytest.mark.parametrize("field", ["event_id", "source", "occurred_at", "organisation",
                                   "setting", "person"])
def test_each_required_field(field: str) -> None:
    body = make_event()
    del body[field]
    assert errors(body) == {field: ["Missing data for required field."]}


def test_unknown_fields_are_refused_at_every_level() -> None:
    body = make_event(extra=1)
    body["person"]["name"] = "Jane"
    body["staff"]["grade"] = "b7"
    body["preferences"]["why"] = "x"
    body["conditions"][0]["severity"] = "high"
    assert set(errors(body)) == {"extra", "person.name", "staff.grade", "preferences.why",
                                 "conditions.0.severity"}


# ------------------------------------------------------------------------------ facts
def _numeric_cases() -> list[tuple[str, Any, bool]]:
    cases = []
    for name, spec in SENT.items():
        if spec.type not in ("int", "double"):
            continue
        cases += [(name, spec.min - 1, False), (name, spec.min, True),
                  (name, spec.max, True), (name, spec.max + 1, False)]
        if spec.type == "double":
            cases += [(name, spec.min - 0.001, False), (name, spec.max + 0.001, False),
                      (name, (spec.min + spec.max) / 2 + 0.25, True)]
    return cases


NUMERIC_CASES = _numeric_cases()


def test_the_catalogue_has_numeric_facts_to_test() -> None:
    assert {"audit_c", "bmi", "systolic_bp"} <= {name for name, _, _ in NUMERIC_CASES}


@pytest.mark.parametrize(("name", "value", "valid"), NUMERIC_CASES,
                         ids=[f"{n}={v}" for n, v, _ in NUMERIC_CASES])
def test_numeric_fact_range(name: str, value: Any, valid: bool) -> None:
    spec = SENT[name]
    if valid:
        assert load(with_facts(**{name: value}))["facts"] == {name: value}
    else:
        assert errors(with_facts(**{name: value})) == {
            f"facts.{name}": [f"Must be between {spec.min} and {spec.max}."]}


@pytest.mark.parametrize("name", sorted(n for n, f in SENT.items() if f.type == "int"))
@pytest.mark.parametrize("bad", ["fraction", "3", True, [1], {"v": 1}])
def test_int_fact_types(name: str, bad: Any) -> None:
    value = SENT[name].min + 0.5 if bad == "fraction" else bad
    assert list(errors(with_facts(**{name: value}))) == [f"facts.{name}"]


@pytest.mark.parametrize("name", sorted(n for n, f in SENT.items() if f.type == "int"))
def test_int_fact_takes_a_whole_float_as_an_int(name: str) -> None:
    value = load(with_facts(**{name: float(SENT[name].max)}))["facts"][name]
    assert value == SENT[name].max and type(value) is int


@pytest.mark.parametrize("name", sorted(n for n, f in SENT.items() if f.type == "double"))
@pytest.mark.parametrize("bad", ["28.4", True, float("nan"), float("inf"), 10**400])
def test_double_fact_types(name: str, bad: Any) -> None:
    assert list(errors(with_facts(**{name: bad}))) == [f"facts.{name}"]


STRING_CASES = [(n, v) for n, f in SENT.items() if f.type == "string" and f.values
                for v in f.values]


@pytest.mark.parametrize(("name", "value"), STRING_CASES)
def test_string_fact_accepts_each_catalogue_value(name: str, value: str) -> None:
    assert load(with_facts(**{name: value}))["facts"] == {name: value}


@pytest.mark.parametrize("name", sorted({n for n, _ in STRING_CASES}))
def test_string_fact_refuses_other_values_with_a_hint(name: str) -> None:
    first = SENT[name].values[0]  # type: ignore[index]
    typo = first[:-1] + ("x" if first[-1] != "x" else "y")
    [message] = errors(with_facts(**{name: typo}))[f"facts.{name}"]
    assert message.startswith("Must be one of:")
    assert f"Did you mean '{first}'?" in message
    assert list(errors(with_facts(**{name: 3}))) == [f"facts.{name}"]
    assert list(errors(with_facts(**{name: ""}))) == [f"facts.{name}"]


@pytest.mark.parametrize("name", sorted(n for n, f in SENT.items() if f.type == "bool"))
def test_bool_fact(name: str) -> None:
    assert load(with_facts(**{name: True}))["facts"] == {name: True}
    assert load(with_facts(**{name: False}))["facts"] == {name: False}
    for bad in (1, 0, "true", "false", "yes"):
        assert errors(with_facts(**{name: bad})) == {f"facts.{name}": ["Not a valid boolean."]}


@pytest.mark.parametrize("name", sorted(SENT))
def test_a_null_fact_is_dropped_not_kept_as_null(name: str) -> None:
    assert load(with_facts(**{name: None}))["facts"] == {}


@pytest.mark.parametrize("name", DERIVED)
def test_a_derived_fact_is_refused_in_facts(name: str) -> None:
    [message] = errors(with_facts(**{name: 1}))[f"facts.{name}"]
    assert "derived from the event" in message


def test_the_age_fact_is_derived() -> None:
    assert "age" in DERIVED
    assert "facts.age" in errors(with_facts(age=40))


def test_unknown_facts_get_a_did_you_mean_with_the_other_errors() -> None:
    found = errors(with_facts(smokng_status="current", bmi=5, zzz=1))
    assert found == {
        "facts.smokng_status": ["Unknown fact. Did you mean 'smoking_status'?"],
        "facts.bmi": ["Must be between 10 and 100."],
        "facts.zzz": ["Unknown fact."],
    }


def test_the_schema_follows_the_catalogue(tmp_path: Path) -> None:
    facts = (ROOT / "config" / "facts.yaml").read_text()
    (tmp_path / "facts.yaml").write_text(facts.replace(
        "facts:\n", "facts:\n  steps_per_day:\n    type: int\n    min: 0\n    max: 100000\n", 1))
    (tmp_path / "valuesets.yaml").write_text((ROOT / "config" / "valuesets.yaml").read_text())
    schema = build_event_schemas(load_catalogue(tmp_path))
    assert schema().load(with_facts(steps_per_day=8000))["facts"] == {"steps_per_day": 8000}
    with pytest.raises(ma.ValidationError):
        SCHEMA().load(with_facts(steps_per_day=8000))


# ------------------------------------------------------------------------------ times
def test_naive_occurred_at_is_refused() -> None:
    assert errors(make_event(occurred_at="2024-01-01T10:00:00")) == {"occurred_at": [
        "Must include a zone offset, e.g. 2026-11-22T09:30:00+00:00."]}


@pytest.mark.parametrize(("ahead", "valid"), [(timedelta(minutes=4), True),
                                              (timedelta(minutes=6), False),
                                              (timedelta(days=365), False)])
def test_occurred_at_in_the_future(ahead: timedelta, valid: bool) -> None:
    body = make_event(occurred_at=(datetime.now(UTC) + ahead).isoformat())
    if valid:
        load(body)
    else:
        assert errors(body) == {"occurred_at": ["Must not be more than 5 minutes in the future."]}


def test_occurred_at_in_another_zone_is_converted_to_utc() -> None:
    data = load(make_event(occurred_at="2024-06-01T10:30:00+05:30", conditions=[]))
    assert data["occurred_at"] == datetime(2024, 6, 1, 5, 0, tzinfo=UTC)
    assert data["occurred_at"].tzinfo == UTC


def test_old_events_are_accepted() -> None:
    data = load(make_event(occurred_at="1990-01-01T00:00:00Z", conditions=[],
                           person={"id": "p", "age": 50}))
    assert data["occurred_at"].year == 1990


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "not a time", 1700000000,
                                   "2024-02-30T10:00:00Z"])
def test_impossible_occurred_at_is_refused_not_raised(value: Any) -> None:
    assert list(errors(make_event(occurred_at=value, person={"id": "p", "age": 1}))) == [
        "occurred_at"]


# ------------------------------------------------------------------------------ person
def test_person_needs_age_or_birth_date() -> None:
    assert set(errors(make_event(person={"id": "p"}))) == {"person.age", "person.birth_date"}
    load(make_event(person={"id": "p", "age": 0}))
    load(make_event(person={"id": "p", "age": 130}))
    assert list(errors(make_event(person={"id": "p", "age": 131}))) == ["person.age"]
    assert list(errors(make_event(person={"id": "p", "age": -1}))) == ["person.age"]


def test_birth_date_after_occurred_at_is_refused() -> None:
    body = make_event(occurred_at="2020-05-01T23:30:00-02:00", conditions=[],
                      person={"id": "p", "birth_date": "2020-05-02"})
    # 23:30 at -02:00 is 01:30 UTC on 2 May: a birth that day is not after the contact.
    load(body)
    body["person"]["birth_date"] = "2020-05-03"
    assert errors(body) == {"person.birth_date": ["Must not be after occurred_at."]}


@pytest.mark.parametrize(("raw", "digits"), [("9434765919", "9434765919"),
                                             ("943 476 5919", "9434765919"),
                                             ("943-476-5919", "9434765919"),
                                             (" 4010232137 ", "4010232137")])
def test_valid_nhs_numbers_are_normalised(raw: str, digits: str) -> None:
    body = make_event()
    body["person"]["nhs_number"] = raw
    assert load(body)["person"]["nhs_number"] == digits


@pytest.mark.parametrize("raw", ["9434765918", "943476591", "94347659191", "94347659l9",
                                 "", 9434765919, "0000000001"])
def test_invalid_nhs_numbers_are_named(raw: Any) -> None:
    body = make_event()
    body["person"]["nhs_number"] = raw
    assert list(errors(body)) == ["person.nhs_number"]


@pytest.mark.parametrize(("path", "limit"), [("event_id", 200), ("source", 100)])
def test_identifier_lengths(path: str, limit: int) -> None:
    load(make_event(**{path: "x" * limit}))
    assert list(errors(make_event(**{path: "x" * (limit + 1)}))) == [path]


def test_nested_string_lengths() -> None:
    body = make_event()
    body["person"]["id"] = "p" * 100
    body["staff"]["team"] = "t" * 100
    body["conditions"][0]["display"] = "d" * 500
    load(body)
    body["person"]["id"] += "p"
    body["staff"]["team"] += "t"
    body["conditions"][0]["display"] += "d"
    assert set(errors(body)) == {"person.id", "staff.team", "conditions.0.display"}


# ------------------------------------------------------------------------------ conditions
def test_every_code_system_and_groups_load() -> None:
    conditions = [{"system": SNOMED, "code": "44054006"}, {"system": ICD10, "code": "E11"},
                  {"system": ICD10_UK, "code": "J44.9"}, {"group": "diabetes_type2"},
                  {"system": SNOMED, "code": "999999999"}]
    assert load(make_event(conditions=conditions))["conditions"] == conditions


@pytest.mark.parametrize(("item", "field"), [
    ({"system": "http://snomed.info/sct/", "code": "44054006"}, "system"),
    ({"system": "urn:oid:2.16.840.1.113883.6.90", "code": "E11"}, "system"),
    ({"system": SNOMED, "code": "E11"}, "code"),
    ({"system": SNOMED, "code": "12345"}, "code"),
    ({"system": ICD10, "code": "44054006"}, "code"),
    ({"system": ICD10_UK, "code": "J4"}, "code"),
    ({"group": "copd", "code": "J44"}, "group"),
    ({"group": "flu"}, "group"),
    ({"code": "44054006"}, "system"),
])
def test_bad_conditions_are_named_by_index(item: dict[str, Any], field: str) -> None:
    # The bad item is second, so the path must carry its own index, not the first one's.
    assert list(errors(make_event(conditions=[{"group": "copd"}, item]))) == [
        f"conditions.1.{field}"]


def test_condition_errors_carry_their_index() -> None:
    found = errors(make_event(conditions=[{"group": "copd"}, {"system": SNOMED, "code": "x1"},
                                          {"group": "nope"}]))
    assert set(found) == {"conditions.1.code", "conditions.2.group"}


def test_onset_after_the_contact_is_refused() -> None:
    body = make_event(occurred_at="2024-01-01T12:00:00Z",
                      conditions=[{"group": "copd", "onset_date": "2024-01-02"}],
                      person={"id": "p", "age": 60})
    assert errors(body) == {"conditions.0.onset_date": ["Must not be after occurred_at."]}


# ------------------------------------------------------------------------------ list limits
def test_list_limits() -> None:
    # The limit counts distinct codes (issue 10: real records list one code many times).
    load(make_event(conditions=[{"group": "copd"}] * 300))
    assert list(errors(make_event(conditions=[{"group": "copd"}] * 301))) == ["conditions"]
    distinct = [{"system": "http://snomed.info/sct", "code": str(100000 + n)} for n in range(101)]
    load(make_event(conditions=distinct[:100]))
    assert list(errors(make_event(conditions=distinct))) == ["conditions"]
    topics = [f"t{i}" for i in range(30)]
    load(make_event(preferences={"declined_topics": topics}))
    assert list(errors(make_event(preferences={"declined_topics": [*topics, "t30"]}))) == [
        "preferences.declined_topics"]


def test_declined_topics_are_slugs() -> None:
    assert list(errors(make_event(preferences={"declined_topics": ["ok", "Not OK"]}))) == [
        "preferences.declined_topics.1"]
