"""The staff screen's pieces without a browser: its words, whose prompt it is (person and
contact), the display label's window and the beat that enforces it, and stream tokens narrowed
to one person or one contact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import marshmallow as ma
import pytest

from mecc.admin.keys import Principal
from mecc.clinical.catalogue import load_catalogue
from mecc.clinical.directory import SERVICE_TYPES
from mecc.clinical.domain import OUTCOMES, TOPICS
from mecc.delivery import tokens
from mecc.delivery.hub import Frame
from mecc.intake.contacts import _view
from mecc.intake.display import label_to_keep
from mecc.intake.schemas import build_event_schemas
from mecc.platform.celery_app import celery_config
from mecc.platform.settings import Settings, SettingsError
from mecc.prompts import wording
from tests.support import ROOT
from tests.support.factories import make_event

CATALOGUE = load_catalogue(ROOT / "config")
NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
SECRET = "unit-secret"  # noqa: S105 - a test signing key


# ------------------------------------------------------------------------------ words
def test_every_topic_outcome_setting_and_service_type_has_plain_words() -> None:
    words = wording.screen_wording()
    assert set(words["topics"]) == set(TOPICS)
    assert words["topics"]["frailty_falls"] == "Frailty and falls"
    assert words["topics"]["self_management"] == "Self-management"
    assert list(words["outcomes"]) == list(OUTCOMES)
    assert set(words["settings"]) == set(CATALOGUE.facts["setting"].values or ())
    assert set(words["contact_types"]) == set(CATALOGUE.facts["contact_type"].values or ())
    assert set(words["sexes"]) == set(CATALOGUE.facts["sex"].values or ())
    assert set(words["service_types"]) == set(SERVICE_TYPES)
    assert set(words["priorities"].values()) == {"Urgent", "Important", "Routine"}


def test_every_reading_a_rule_can_rest_on_is_worded() -> None:
    facts = wording.FACTS
    for name, spec in CATALOGUE.facts.items():
        if name in wording.NOT_READINGS:
            continue
        assert name in facts, f"{name}: add how the screen says it to mecc/prompts/wording.py"
        if facts[name]["style"] in ("choice", "flag"):
            expected = {"true", "false"} if spec.type == "bool" else set(spec.values or ())
            assert set(facts[name]["values"]) == expected, name
        else:
            assert facts[name]["label"], name


# ------------------------------------------------------------------------------ the event
def load(body: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = build_event_schemas(CATALOGUE)().load(body)
    return loaded


def test_an_event_may_carry_a_display_label() -> None:
    body = make_event()
    body["person"]["display"] = "Ann Example, 54 F, MRN 1234"
    assert load(body)["person"]["display"] == "Ann Example, 54 F, MRN 1234"
    body["person"]["display"] = None
    assert load(body)["person"]["display"] is None
    for bad in ("x" * 101, "tab\there", "", 42):
        body["person"]["display"] = bad
        with pytest.raises(ma.ValidationError) as caught:
            load(body)
        assert set(caught.value.messages) == {"person"}
        assert set(caught.value.messages["person"]) == {"display"}  # type: ignore[call-overload]


def test_a_label_is_kept_only_while_its_contact_is_inside_the_window() -> None:
    settings = Settings(display_retention_hours=24)
    assert label_to_keep(settings, "Ann", NOW - timedelta(hours=23), NOW) == "Ann"
    assert label_to_keep(settings, "Ann", NOW - timedelta(hours=24), NOW) is None
    assert label_to_keep(settings, None, NOW, NOW) is None


def test_the_person_at_the_contact() -> None:
    by_birth = _view("p-1", "Ann", {"person": {"birth_date": "1971-04-02", "sex": "female"}},
                     NOW, "general_practice", "appointment")
    assert by_birth.person() == {"id": "p-1", "display": "Ann", "age": 55, "sex": "female"}
    assert by_birth.contact() == {"occurred_at": "2026-12-04T09:30:00Z",
                                  "setting": "general_practice",
                                  "contact_type": "appointment"}
    before_birthday = _view("p-1", None, {"person": {"birth_date": "1971-12-05"}}, NOW,
                            "dental", None)
    assert before_birthday.person()["age"] == 54
    assert _view("p-2", None, {"person": {"age": 80}}, NOW, "other", None).age == 80
    assert _view("p-3", None, {}, NOW, "other", None).person() == {
        "id": "p-3", "display": None, "age": None, "sex": None}


# ------------------------------------------------------------------------------ retention
def test_beat_erases_a_quarter_window_apart_and_at_least_every_five_minutes() -> None:
    def every(hours: float) -> float:
        entry = celery_config(Settings(display_retention_hours=hours))["beat_schedule"][
            "erase-display-labels"]
        assert entry["task"] == "mecc.erase_display_labels"
        return float(entry["schedule"])

    assert every(24) == 300
    assert every(0.002) == pytest.approx(1.8)
    assert every(0.0001) == 1.0
    env = {"MECC_SECRET_KEY": "s", "MECC_PSEUDONYM_KEY": "p"}
    assert Settings.from_env(env).display_retention_hours == 24
    assert Settings.from_env({**env, "MECC_DISPLAY_RETENTION_HOURS": "0.5"}) \
        .display_retention_hours == 0.5
    with pytest.raises(SettingsError, match="MECC_DISPLAY_RETENTION_HOURS"):
        Settings.from_env({**env, "MECC_DISPLAY_RETENTION_HOURS": "0"})


# ------------------------------------------------------------------------------ tokens
def principal() -> Principal:
    return Principal(key_id="k1", name="gp", organisation="Y02345",
                     scopes=frozenset({"prompts:read", "prompts:write"}))


@pytest.mark.parametrize("flt", [
    tokens.StreamFilter("Y02345", "blue", "st-1", person_id="p-1", source="emis-web"),
    tokens.StreamFilter("Y02345", event="3f0c2b1e-8f7a-4c53-9e55-1c0d1f0e9a11",
                        person_id="p-1", source="emis-web"),
    tokens.StreamFilter("Y02345"),
])
def test_a_narrowed_filter_survives_signing_and_renewal(flt: tokens.StreamFilter) -> None:
    grant = tokens.new_grant(principal(), flt, ttl=900, now=NOW.timestamp())
    read = tokens.read_grant(SECRET, tokens.sign_grant(SECRET, grant), now=NOW.timestamp())
    assert read.filter == flt
    renewed = tokens.renewed(read, ttl=900, session_seconds=3600, now=NOW.timestamp() + 600)
    assert renewed.filter == flt and renewed.filter.in_context is (flt.person_id is not None)
    # Asking a narrowed token for a team or member of staff keeps the person.
    assert flt.narrowed(None, "st-1").person_id == flt.person_id


@pytest.mark.parametrize("person_id, source, event, seen", [
    ("p-1", "emis-web", "e-1", True),
    ("p-2", "emis-web", "e-2", False),  # another person
    ("p-1", "pharmacy", "e-3", False),  # the same id from another system: another person
    (None, None, None, False),  # an announcement that does not say whose
])
def test_a_screen_for_one_person_hears_only_them(person_id: str | None, source: str | None,
                                                 event: str | None, seen: bool) -> None:
    flt = tokens.StreamFilter("Y02345", person_id="p-1", source="emis-web")
    frame = Frame(1, "prompt", "Y02345", "blue", "st-1", "{}", person_id=person_id,
                  source=source, contact=event)
    assert frame.seen_by(flt) is seen
    assert frame.seen_by(tokens.StreamFilter("Y02345")) is True
    contact_only = tokens.StreamFilter("Y02345", event="e-1")
    assert frame.seen_by(contact_only) is (event == "e-1")


def test_an_announcement_names_whose_prompt_it_carries() -> None:
    raw = ('{"id": 7, "event": "prompt", "organisation": "Y02345", "team": null, '
           '"staff_id": null, "data": {"id": "x", "person_id": "p-1", "source": "emis-web", '
           '"event": "e-1"}}')
    frame = Frame.from_announcement(raw)
    assert frame is not None
    assert (frame.person_id, frame.source, frame.contact) == ("p-1", "emis-web", "e-1")
    assert Frame.from_announcement('{"id": 7, "event": "prompt", "data": []}') is None
