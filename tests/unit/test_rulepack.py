"""Rule packs: loading and validating rules, writing them back, and rendering prompts.

Whether each default rule fires for the right people is tested clinically, vignette by
vignette, in test_default_pack.py; this module tests the pack's shape and the machinery.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from mecc.clinical.catalogue import load_catalogue
from mecc.clinical.directory import SERVICE_TYPES
from mecc.clinical.domain import RuleDef, Source
from mecc.clinical.rulepack import (
    RulePackError,
    dump_rule_pack,
    load_rule_pack,
    parse_rule,
    rule_to_dict,
)
from mecc.clinical.templates import SUMMARY_MAX_CHARS, fit_summary, render_prompt, widest_facts

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PACK = ROOT / "config" / "rules" / "default.yaml"
CATALOGUE = load_catalogue(ROOT / "config")
PACK = load_rule_pack(DEFAULT_PACK, CATALOGUE)
BY_KEY = {rule.key: rule for rule in PACK}

# RULE-PACK.md's table: key -> (topic, kind, priority, cooldown days, suggested service types).
TABLE = {
    "alcohol-specialist-referral": ("alcohol", "self_management_referral", 95, 180,
                                    ("alcohol_support",)),
    "smoking-very-brief-advice": ("smoking", "lifestyle_conversation", 90, 90, ("stop_smoking",)),
    "mental-wellbeing-talking-therapies": ("mental_wellbeing", "self_management_referral", 88, 90,
                                           ("talking_therapies",)),
    "diabetes-prevention-programme": ("diabetes_prevention", "self_management_referral", 85, 365,
                                      ("diabetes_prevention",)),
    "weight-management-referral": ("healthy_weight", "self_management_referral", 80, 180,
                                   ("weight_management",)),
    "alcohol-brief-advice": ("alcohol", "lifestyle_conversation", 78, 180, ("alcohol_support",)),
    "blood-pressure-check": ("blood_pressure", "lifestyle_conversation", 75, 90, ()),
    "diabetes-structured-education": ("self_management", "self_management_referral", 72, 365,
                                      ("structured_education",)),
    "pulmonary-rehabilitation": ("rehabilitation", "self_management_referral", 72, 365,
                                 ("pulmonary_rehab",)),
    "cardiac-rehabilitation": ("rehabilitation", "self_management_referral", 72, 365,
                               ("cardiac_rehab",)),
    "frailty-falls-prevention": ("frailty_falls", "social_prescribing", 70, 180,
                                 ("falls_prevention",)),
    "carers-support": ("carers", "social_prescribing", 65, 365, ("carers_support",)),
    "care-and-support-planning": ("care_planning", "self_management_referral", 60, 365,
                                  ("health_coaching",)),
    "loneliness-social-prescribing": ("social_connection", "social_prescribing", 58, 180,
                                      ("social_prescribing",)),
    "money-advice": ("money_advice", "social_prescribing", 55, 180, ("money_advice",)),
    "physical-activity-brief-advice": ("physical_activity", "lifestyle_conversation", 50, 180,
                                       ("physical_activity",)),
    "healthy-weight-conversation": ("healthy_weight", "lifestyle_conversation", 45, 180,
                                    ("weight_management",)),
}


def valid_rule(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": "test-rule", "title": "Test rule", "topic": "smoking",
        "kind": "lifestyle_conversation", "when": "age >= 18 && smoking_status == 'current'",
        "priority": 50,
        "prompt": {"summary": "Offer very brief advice", "detail": "Ask, advise, act.",
                   "indicator": "warning"},
        "suggestions": ["stop_smoking"],
        "sources": [{"label": "NICE NG209", "url": "https://www.nice.org.uk/guidance/ng209"}],
    }
    body.update(overrides)
    return body


def with_prompt(**prompt: Any) -> dict[str, Any]:
    body = valid_rule()
    body["prompt"] = {**body["prompt"], **prompt}
    return body


def errors_of(body: Any, **kwargs: Any) -> list[dict[str, Any]]:
    with pytest.raises(RulePackError) as exc:
        parse_rule(body, CATALOGUE, **kwargs)
    return exc.value.errors


# --- the default pack ---------------------------------------------------------------------------


def test_default_pack_has_exactly_the_rules_of_the_table() -> None:
    assert [rule.key for rule in PACK] == list(TABLE)


@pytest.mark.parametrize("key", TABLE)
def test_default_rule_matches_its_table_row(key: str) -> None:
    rule = BY_KEY[key]
    row = (rule.topic, rule.kind, rule.priority, rule.cooldown_days, rule.suggestions)
    assert row == TABLE[key]
    assert rule.status == "active"
    assert rule.decline_days == 180
    assert rule.settings == frozenset()
    assert rule.version == 1


def test_only_the_blood_pressure_rule_is_limited_to_staff_roles() -> None:
    limited = {rule.key: rule.staff_roles for rule in PACK if rule.staff_roles}
    assert limited == {"blood-pressure-check": frozenset(
        {"gp", "practice_nurse", "healthcare_assistant", "pharmacist", "community_nurse"})}


def test_indicators_reflect_urgency() -> None:
    assert BY_KEY["alcohol-specialist-referral"].indicator == "critical"
    for key in ("smoking-very-brief-advice", "mental-wellbeing-talking-therapies",
                "blood-pressure-check"):
        assert BY_KEY[key].indicator == "warning", key


@pytest.mark.parametrize("rule", PACK, ids=lambda r: r.key)
def test_every_summary_fits_140_characters_when_rendered(rule: RuleDef) -> None:
    for facts in ({}, widest_facts(CATALOGUE), {"audit": 23, "bmi": 27.4567}):
        summary, detail = render_prompt(rule, facts)
        assert 0 < len(summary) <= SUMMARY_MAX_CHARS, (rule.key, summary)
        assert "\n" not in summary and "{{" not in summary and "…" not in summary
        assert "{{" not in detail and "{%" not in detail


@pytest.mark.parametrize("rule", PACK, ids=lambda r: r.key)
def test_every_rule_has_talking_points_and_https_sources(rule: RuleDef) -> None:
    words = len(render_prompt(rule, {"audit": 23, "bmi": 31.2})[1].split())
    assert 80 <= words <= 200, (rule.key, words)
    assert rule.sources, rule.key
    for source in rule.sources:
        assert source.label.strip()
        assert source.url is not None and source.url.startswith("https://"), source


def test_suggestions_are_service_types() -> None:
    for rule in PACK:
        assert set(rule.suggestions) <= set(SERVICE_TYPES)


def test_templates_use_a_fact_only_where_the_rule_guarantees_it() -> None:
    summary, _ = render_prompt(BY_KEY["alcohol-specialist-referral"], {"audit": 22, "age": 40})
    assert "AUDIT score of 22" in summary
    summary, detail = render_prompt(BY_KEY["weight-management-referral"], {"bmi": 32.46})
    assert summary.endswith("BMI 32.5") and "BMI of 32.5" in detail


# --- writing rules back ---------------------------------------------------------------------------


def test_rule_to_dict_round_trips_every_default_rule() -> None:
    for rule in PACK:
        assert parse_rule(rule_to_dict(rule), CATALOGUE) == rule


def test_dump_then_load_is_lossless(tmp_path: Path) -> None:
    path = tmp_path / "exported.yaml"
    path.write_text(dump_rule_pack(PACK), encoding="utf-8")
    assert load_rule_pack(path, CATALOGUE) == PACK


def test_dump_is_stable_and_readable(tmp_path: Path) -> None:
    text = dump_rule_pack(PACK)
    (tmp_path / "again.yaml").write_text(text, encoding="utf-8")
    assert dump_rule_pack(load_rule_pack(tmp_path / "again.yaml", CATALOGUE)) == text
    assert "    detail: |" in text  # markdown kept as a block, not one escaped line
    assert "\n\n- key: smoking-very-brief-advice\n" in text
    assert "suggestions: [stop_smoking]" in text
    first = yaml.safe_load(text)["rules"][0]
    assert list(first)[:5] == ["key", "version", "title", "topic", "kind"]


def test_round_trip_keeps_audit_fields_and_odd_text() -> None:
    rule = replace(
        PACK[0], version=7, updated_by="admin@example.org",
        updated_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        detail="Line with trailing spaces   \n\n- a: b\n  'quoted' \"too\"", summary="Just text",
        sources=(Source(label="No link"),), status="draft",
    )
    assert parse_rule(rule_to_dict(rule), CATALOGUE) == rule
    [back] = yaml.safe_load(dump_rule_pack([rule]))["rules"]
    assert parse_rule(back, CATALOGUE) == rule


def test_updated_at_is_read_in_any_offset_and_kept_in_utc() -> None:
    plus_one = datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    rule = parse_rule(valid_rule(updated_at=plus_one.isoformat()), CATALOGUE)
    assert rule.updated_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert rule.updated_at.tzinfo is UTC


# --- validation -----------------------------------------------------------------------------------


def test_a_minimal_rule_gets_the_documented_defaults() -> None:
    rule = parse_rule({"key": "minimal", "title": "Minimal", "topic": "smoking",
                       "kind": "lifestyle_conversation", "when": "age >= 18", "priority": 10,
                       "prompt": {"summary": "Say hello"}}, CATALOGUE)
    assert rule == RuleDef(key="minimal", version=1, title="Minimal", topic="smoking",
                           kind="lifestyle_conversation", when="age >= 18", priority=10,
                           summary="Say hello")
    assert (rule.status, rule.indicator, rule.cooldown_days, rule.decline_days) == (
        "draft", "info", 180, 180)


def test_topic_is_a_free_slug() -> None:
    assert parse_rule(valid_rule(topic="oral_health"), CATALOGUE).topic == "oral_health"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (valid_rule(colour="blue"), "colour"),
        (valid_rule(key="Bad Key"), "key"),
        (valid_rule(key="a"), "key"),
        ({k: v for k, v in valid_rule().items() if k != "key"}, "key"),
        (valid_rule(version=0), "version"),
        (valid_rule(title=""), "title"),
        (valid_rule(topic="Healthy Weight"), "topic"),
        (valid_rule(kind="conversation"), "kind"),
        (valid_rule(status="live"), "status"),
        (valid_rule(priority=0), "priority"),
        (valid_rule(priority=101), "priority"),
        (valid_rule(priority=True), "priority"),
        (valid_rule(priority="high"), "priority"),
        ({k: v for k, v in valid_rule().items() if k != "priority"}, "priority"),
        (valid_rule(cooldown_days=-1), "cooldown_days"),
        (valid_rule(decline_days=3651), "decline_days"),
        (valid_rule(settings=["general_practice", "pub"]), "settings.1"),
        (valid_rule(settings="general_practice"), "settings"),
        (valid_rule(staff_roles=["doctor"]), "staff_roles.0"),
        (valid_rule(suggestions=["stop_smoking", "quit_smoking"]), "suggestions.1"),
        (valid_rule(suggestions=["stop_smoking", "stop_smoking"]), "suggestions.1"),
        (valid_rule(when=""), "when"),
        (valid_rule(when="smoking_status = 'current'"), "when"),
        (valid_rule(prompt="Offer advice"), "prompt"),
        ({k: v for k, v in valid_rule().items() if k != "prompt"}, "prompt"),
        (with_prompt(summary=""), "prompt.summary"),
        (with_prompt(summary="x" * 141), "prompt.summary"),
        (with_prompt(summary="AUDIT {{ audit "), "prompt.summary"),
        (with_prompt(summary="AUDIT {{ audti }}"), "prompt.summary"),
        (with_prompt(summary="{{ smoking_status }}" * 12), "prompt.summary"),
        (with_prompt(summary="{{ bmi }}"), "prompt.summary"),
        (with_prompt(detail="{% if %}"), "prompt.detail"),
        (with_prompt(detail="{{ '%d'|format(age) }}"), "prompt.detail"),
        (with_prompt(indicator="red"), "prompt.indicator"),
        (with_prompt(colour="red"), "prompt.colour"),
        (valid_rule(sources=[{"label": "NICE", "url": "www.nice.org.uk"}]), "sources.0.url"),
        (valid_rule(sources=[{"url": "https://www.nice.org.uk"}]), "sources.0.label"),
        (valid_rule(sources=[{"label": "x", "page": 3}]), "sources.0.page"),
        (valid_rule(sources=["NICE"]), "sources.0"),
        (valid_rule(updated_by=3), "updated_by"),
        (valid_rule(updated_at="2026-01-02T03:04:05"), "updated_at"),
        (valid_rule(updated_at="yesterday"), "updated_at"),
    ],
)
def test_each_validation_error_names_its_path(body: dict[str, Any], path: str) -> None:
    errors = errors_of(body, path_prefix="rules.3")
    assert [e["path"] for e in errors] == [f"rules.3.{path}"], errors
    assert errors[0]["message"]


def test_without_a_prefix_paths_are_the_field_names() -> None:
    assert [e["path"] for e in errors_of(with_prompt(indicator="red"))] == ["prompt.indicator"]


def test_every_problem_is_reported_at_once() -> None:
    errors = errors_of(valid_rule(priority=0, kind="x", when="bmii > 30",
                                  prompt={"summary": "ok", "indicator": "red"}))
    assert [e["path"] for e in errors] == ["kind", "priority", "when", "prompt.indicator"]


def test_a_broken_when_gives_line_column_and_hint() -> None:
    [error] = errors_of(valid_rule(when="age >= 18 &&\n  bmii >= 30"), path_prefix="rules.4")
    assert error["path"] == "rules.4.when"
    assert (error["line"], error["column"]) == (2, 3)
    assert "bmii" in error["message"]
    assert "bmi" in error["hint"]


def test_a_template_syntax_error_gives_its_line() -> None:
    [error] = errors_of(with_prompt(detail="fine\n{{ audit }\nmore"))
    assert error["path"] == "prompt.detail" and error["line"] == 2


def test_a_misspelt_field_gets_a_suggestion() -> None:
    [error] = errors_of(valid_rule(cooldown=30))
    assert error["path"] == "cooldown" and "cooldown_days" in error["message"]


def test_settings_and_roles_come_from_the_catalogue() -> None:
    rule = parse_rule(valid_rule(settings=["general_practice", "community_pharmacy"],
                                 staff_roles=["pharmacist"]), CATALOGUE)
    assert rule.settings == {"general_practice", "community_pharmacy"}
    assert rule.staff_roles == {"pharmacist"}


def test_a_rule_that_is_not_a_mapping_is_rejected() -> None:
    assert errors_of(["key"], path_prefix="rules.0") == [
        {"path": "rules.0", "message": "Must be a mapping."}]


# --- packs ----------------------------------------------------------------------------------------


def write_pack(tmp_path: Path, rules: Any, name: str = "pack.yaml", **extra: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"rules": rules, **extra}, sort_keys=False), encoding="utf-8")
    return path


def test_pack_errors_name_the_file_and_the_entry(tmp_path: Path) -> None:
    path = write_pack(tmp_path, [valid_rule(key="fine"), valid_rule(key="bad", when="bmii > 3")])
    with pytest.raises(RulePackError) as exc:
        load_rule_pack(path, CATALOGUE)
    [error] = exc.value.errors
    assert error["path"] == "rules.1.when" and error["file"] == str(path)
    assert exc.value.source == str(path)
    assert str(exc.value).startswith(f"{path}: rules.1.when: unknown fact 'bmii'")
    assert "(line 1, column 1)" in str(exc.value)


def test_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    path = write_pack(tmp_path, [valid_rule(), valid_rule()])
    with pytest.raises(RulePackError) as exc:
        load_rule_pack(path, CATALOGUE)
    assert [e["path"] for e in exc.value.errors] == ["rules.1.key"]


def test_a_directory_of_packs_loads_in_file_order(tmp_path: Path) -> None:
    write_pack(tmp_path, [valid_rule(key="second")], name="b.yaml")
    write_pack(tmp_path, [valid_rule(key="first")], name="a.yaml")
    assert [r.key for r in load_rule_pack(tmp_path, CATALOGUE)] == ["first", "second"]
    write_pack(tmp_path, [valid_rule(key="first")], name="c.yaml")
    with pytest.raises(RulePackError, match="Duplicate key 'first'"):
        load_rule_pack(tmp_path, CATALOGUE)


@pytest.mark.parametrize("document", ["- key: x", "rules: {key: x}", "rules: []\nversion: 2"])
def test_badly_shaped_packs_are_rejected(tmp_path: Path, document: str) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(document)
    with pytest.raises(RulePackError):
        load_rule_pack(path, CATALOGUE)


def test_invalid_yaml_reports_where(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text("rules:\n  - key: x\n    title: [unclosed\n")
    with pytest.raises(RulePackError) as exc:
        load_rule_pack(path, CATALOGUE)
    [error] = exc.value.errors
    assert error["line"] is not None and error["file"] == str(path)


def test_missing_file_is_a_rule_pack_error(tmp_path: Path) -> None:
    with pytest.raises(RulePackError, match="Cannot read"):
        load_rule_pack(tmp_path / "nope.yaml", CATALOGUE)


# --- rendering ------------------------------------------------------------------------------------


def make_rule(summary: str, detail: str = "", **kwargs: Any) -> RuleDef:
    return RuleDef(key=kwargs.pop("key", "render-test"), version=kwargs.pop("version", 1),
                   title="Render test", topic="smoking", kind="lifestyle_conversation",
                   when="age >= 18", priority=50, summary=summary, detail=detail, **kwargs)


def test_unknown_facts_render_as_empty_text() -> None:
    rule = make_rule("BMI [{{ bmi }}] [{{ bmi|round(1) }}] [{{ bmi * 2 }}]",
                     "{% if bmi > 30 %}high{% else %}not known{% endif %}")
    assert render_prompt(rule, {}) == ("BMI [] [] []", "not known")
    assert render_prompt(rule, {"bmi": 31.25}) == ("BMI [31.25] [31.2] [62.5]", "high")


def test_output_is_not_html_escaped() -> None:
    rule = make_rule("Smoking & vaping <advice>", "**Ask** & <advise>")
    assert render_prompt(rule, {}) == ("Smoking & vaping <advice>", "**Ask** & <advise>")


def test_templates_cannot_reach_python_internals() -> None:
    rule = make_rule("x{{ ''.__class__.__mro__ }}{{ age.__class__ }}y")
    assert render_prompt(rule, {"age": 40})[0] == "xy"


def test_a_long_rendered_summary_is_cut_at_a_word_with_an_ellipsis() -> None:
    rule = make_rule("Offer support: {{ ethnicity_group }} " + "word " * 40)
    summary, _ = render_prompt(rule, {"ethnicity_group": "a" * 30})
    assert len(summary) <= SUMMARY_MAX_CHARS and summary.endswith("word…")


def test_fit_summary() -> None:
    assert fit_summary("  one\n  line  ") == "one line"
    assert fit_summary("x" * 140) == "x" * 140
    assert fit_summary("x" * 200) == "x" * 139 + "…"
    cut = fit_summary("abc " * 50)
    assert len(cut) <= SUMMARY_MAX_CHARS and cut.endswith("abc…")


def test_a_template_that_fails_at_runtime_falls_back_to_its_text() -> None:
    rule = make_rule("Status {{ '%d'|format(smoking_status) }} known",
                     "Detail {{ 1 // audit }} end")
    assert render_prompt(rule, {"smoking_status": "current", "audit": 0}) == (
        "Status known", "Detail  end")


def test_templates_are_compiled_once_per_rule_version_but_never_stale() -> None:
    first = make_rule("First {{ age }}", key="cache-test", version=3)
    assert render_prompt(first, {"age": 40})[0] == "First 40"
    # A dry-run draft can reuse a stored rule's key and version with new text.
    draft = make_rule("Draft {{ age }}", key="cache-test", version=3)
    assert render_prompt(draft, {"age": 41})[0] == "Draft 41"
    assert render_prompt(first, {"age": 42})[0] == "First 42"


def test_parse_does_not_mutate_its_input() -> None:
    body = valid_rule()
    before = copy.deepcopy(body)
    parse_rule(body, CATALOGUE)
    assert body == before
