"""The services directory: loading and validating services, and resolving a prompt's suggestions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mecc.clinical.directory import (
    SERVICE_TYPE_NAMES,
    SERVICE_TYPES,
    ServiceDirectoryError,
    load_services,
    normalise_district,
    parse_service,
    resolve_services,
    service_to_dict,
)
from mecc.clinical.domain import Service

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "services" / "example-manchester.yaml"
SERVICES = load_services(EXAMPLE)

CONTRACT_TYPES = (
    "stop_smoking", "alcohol_support", "weight_management", "physical_activity",
    "talking_therapies", "diabetes_prevention", "structured_education", "pulmonary_rehab",
    "cardiac_rehab", "social_prescribing", "peer_support", "health_coaching", "carers_support",
    "money_advice", "falls_prevention", "befriending",
)


def service(id: str, service_type: str = "stop_smoking", **kwargs: Any) -> Service:
    return Service(id=id, name=f"Service {id}", service_type=service_type, **kwargs)


def valid(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "quit-clinic", "name": "Quit clinic", "service_type": "stop_smoking",
        "areas": ["M14"], "organisations": [], "self_referral": True,
        "contact": {"phone": "0161 496 0999", "email": "quit@example.org",
                    "url": "https://example.org/quit"},
        "referral_url": "https://example.org/quit/refer", "description": "Stop smoking help.",
    }
    body.update(overrides)
    return body


def paths(exc: pytest.ExceptionInfo[ServiceDirectoryError]) -> list[str]:
    return [e["path"] for e in exc.value.errors]


# --- the example directory -----------------------------------------------------------------------


def test_service_types_are_the_contract_list() -> None:
    assert SERVICE_TYPES == CONTRACT_TYPES
    assert set(SERVICE_TYPE_NAMES) == set(SERVICE_TYPES)


def test_example_directory_has_one_to_three_services_of_every_type() -> None:
    for service_type in SERVICE_TYPES:
        count = sum(1 for s in SERVICES if s.service_type == service_type)
        assert 1 <= count <= 3, (service_type, count)


def test_example_directory_is_marked_as_an_example() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.startswith("# example: true")
    assert yaml.safe_load(text)["example"] is True
    local = [s for s in SERVICES if s.areas]
    assert local
    for s in local:
        assert s.name.endswith("(example)"), s.id
        assert s.id.startswith("example-"), s.id
        for url in (s.referral_url, s.contact.get("url")):
            assert url is None or url.startswith("https://example.org/"), (s.id, url)
        email = s.contact.get("email")
        assert email is None or email.endswith("@example.org"), s.id
        phone = s.contact.get("phone")
        # Ofcom's drama range for Manchester numbers: never a real line.
        assert phone is None or phone.startswith("0161 496 0"), (s.id, phone)


def test_example_directory_has_national_services_for_everywhere() -> None:
    national = [s for s in SERVICES if not s.areas]
    assert len(national) >= 3
    assert {s.service_type for s in national} >= {"stop_smoking", "money_advice"}
    assert all(not s.organisations for s in national)


def test_example_ids_are_unique_and_every_service_round_trips() -> None:
    assert len({s.id for s in SERVICES}) == len(SERVICES)
    for s in SERVICES:
        assert parse_service(service_to_dict(s)) == s


def test_loading_a_directory_reads_every_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"services": [valid(id="one")]}))
    (tmp_path / "b.yml").write_text(yaml.safe_dump({"services": [valid(id="two")]}))
    (tmp_path / "notes.txt").write_text("not a services file")
    assert [s.id for s in load_services(tmp_path)] == ["one", "two"]
    assert {s.id for s in load_services(ROOT / "config" / "services")} >= {s.id for s in SERVICES}


# --- validation ----------------------------------------------------------------------------------


def test_parse_service_normalises_districts_and_ods_codes() -> None:
    parsed = parse_service(valid(areas=["m14", " M20 "], organisations=["y02345"]))
    assert parsed.areas == frozenset({"M14", "M20"})
    assert parsed.organisations == frozenset({"Y02345"})
    assert parsed.contact == {"phone": "0161 496 0999", "email": "quit@example.org",
                              "url": "https://example.org/quit"}


def test_minimal_service_gets_defaults() -> None:
    parsed = parse_service({"id": "walks", "name": "Walks", "service_type": "physical_activity"})
    assert parsed == Service(id="walks", name="Walks", service_type="physical_activity")


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"colour": "blue"}, "services.2.colour"),
        ({"id": "Not A Slug"}, "services.2.id"),
        ({"name": ""}, "services.2.name"),
        ({"service_type": "stop_smokng"}, "services.2.service_type"),
        ({"areas": "M14"}, "services.2.areas"),
        ({"areas": ["M14", "Manchester"]}, "services.2.areas.1"),
        ({"organisations": ["not an ods code"]}, "services.2.organisations.0"),
        ({"self_referral": "yes"}, "services.2.self_referral"),
        ({"contact": {"fax": "0161"}}, "services.2.contact.fax"),
        ({"contact": {"url": "example.org/quit"}}, "services.2.contact.url"),
        ({"contact": {"email": "not-an-email"}}, "services.2.contact.email"),
        ({"contact": "0161 496 0999"}, "services.2.contact"),
        ({"referral_url": "ftp://example.org/refer"}, "services.2.referral_url"),
        ({"description": 42}, "services.2.description"),
    ],
)
def test_each_validation_error_names_its_field(overrides: dict[str, Any], path: str) -> None:
    with pytest.raises(ServiceDirectoryError) as exc:
        parse_service(valid(**overrides), path_prefix="services.2")
    assert paths(exc) == [path]


def test_a_misspelt_service_type_gets_a_suggestion() -> None:
    with pytest.raises(ServiceDirectoryError) as exc:
        parse_service(valid(service_type="stop_smokng"))
    assert "Did you mean 'stop_smoking'?" in exc.value.errors[0]["message"]


def test_errors_name_the_file_and_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({"services": [valid(id="ok"), valid(id="bad", areas=["X"])]}))
    with pytest.raises(ServiceDirectoryError) as exc:
        load_services(path)
    assert exc.value.source == str(path)
    assert paths(exc) == ["services.1.areas.0"]
    assert "broken.yaml" in str(exc.value) and "services.1.areas.0" in str(exc.value)


def test_duplicate_ids_are_rejected_within_and_across_files(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump({"services": [valid(id="same"), valid(id="same")]}))
    with pytest.raises(ServiceDirectoryError) as exc:
        load_services(one)
    assert paths(exc) == ["services.1.id"]

    one.write_text(yaml.safe_dump({"services": [valid(id="same")]}))
    (tmp_path / "two.yaml").write_text(yaml.safe_dump({"services": [valid(id="same")]}))
    with pytest.raises(ServiceDirectoryError, match="Duplicate id 'same'"):
        load_services(tmp_path)


@pytest.mark.parametrize(
    "document",
    ["services: {id: x}", "- id: x", "services: []\nregion: north", "example: maybe\nservices: []"],
)
def test_badly_shaped_documents_are_rejected(tmp_path: Path, document: str) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(document)
    with pytest.raises(ServiceDirectoryError):
        load_services(path)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("services: [\n")
    with pytest.raises(ServiceDirectoryError, match="bad.yaml"):
        load_services(path)


# --- resolving suggestions -----------------------------------------------------------------------


def test_local_services_come_before_national_ones() -> None:
    services = [
        service("national"),
        service("local", areas=frozenset({"M14"})),
        service("elsewhere", areas=frozenset({"LS1"})),
    ]
    resolved = resolve_services(["stop_smoking"], services, postcode_district="M14",
                                organisation="Y02345")
    assert [s["service_id"] for s in resolved] == ["local", "national"]


def test_a_suggestion_carries_what_staff_need_to_refer() -> None:
    local = service("quit", areas=frozenset({"M14"}), self_referral=True,
                    contact={"phone": "0161 496 0999"}, referral_url="https://example.org/r")
    [resolved] = resolve_services(["stop_smoking"], [local], postcode_district="M14",
                                  organisation="Y02345")
    assert resolved == {
        "label": "Refer to Service quit", "service_id": "quit", "service_type": "stop_smoking",
        "name": "Service quit", "contact": {"phone": "0161 496 0999"},
        "referral_url": "https://example.org/r", "self_referral": True, "national": False,
    }


@pytest.mark.parametrize("district", ["M14", "m14", " m14 ", "M14 5AB"])
def test_districts_match_case_insensitively(district: str) -> None:
    local = service("local", areas=frozenset({"m14"}))
    resolved = resolve_services(["stop_smoking"], [local], postcode_district=district,
                                organisation="Y02345")
    assert [s["service_id"] for s in resolved] == ["local"]


def test_without_a_district_only_national_services_fit() -> None:
    services = [service("local", areas=frozenset({"M14"})), service("national")]
    resolved = resolve_services(["stop_smoking"], services, postcode_district=None,
                                organisation="Y02345")
    assert [s["service_id"] for s in resolved] == ["national"]


def test_organisation_restricted_services_fit_only_that_organisation() -> None:
    services = [service("practice-only", areas=frozenset({"M14"}),
                        organisations=frozenset({"Y02345"})),
                service("any-practice", areas=frozenset({"M14"}))]
    mine = resolve_services(["stop_smoking"], services, postcode_district="M14",
                            organisation="y02345")
    other = resolve_services(["stop_smoking"], services, postcode_district="M14",
                             organisation="P81234")
    assert [s["service_id"] for s in mine] == ["practice-only", "any-practice"]
    assert [s["service_id"] for s in other] == ["any-practice"]


def test_a_type_without_services_yields_one_generic_suggestion() -> None:
    services = [service("elsewhere", service_type="cardiac_rehab", areas=frozenset({"LS1"}))]
    resolved = resolve_services(["cardiac_rehab", "talking_therapies"], services,
                                postcode_district="M14", organisation="Y02345")
    assert resolved == [
        {"label": "Refer to a local cardiac rehabilitation service",
         "service_type": "cardiac_rehab", "service_id": None},
        {"label": "Refer to a local NHS Talking Therapies service",
         "service_type": "talking_therapies", "service_id": None},
    ]


def test_suggested_types_keep_their_order_and_repeat_once() -> None:
    services = [service("quit"), service("walk", service_type="physical_activity")]
    resolved = resolve_services(["physical_activity", "stop_smoking", "physical_activity"],
                                services, postcode_district="M14", organisation="Y02345")
    assert [s["service_id"] for s in resolved] == ["walk", "quit"]


def test_no_suggestions_resolve_to_nothing() -> None:
    assert resolve_services([], SERVICES, postcode_district="M14", organisation="Y02345") == []


def test_example_directory_resolves_for_a_manchester_patient() -> None:
    resolved = resolve_services(["stop_smoking", "social_prescribing"], SERVICES,
                                postcode_district="M14", organisation="Y02345")
    ids = [s["service_id"] for s in resolved]
    assert ids.index("example-mcr-stop-smoking") < ids.index("nhs-smokefree-helpline")
    assert "example-y02345-practice-link-worker" in ids
    assert "example-central-mcr-social-prescribing" not in ids  # M14 is south Manchester
    assert all(s["service_id"] for s in resolved)


def test_normalise_district() -> None:
    assert normalise_district(" m14 5ab ") == "M14"
    assert normalise_district("") is None
    assert normalise_district(None) is None
