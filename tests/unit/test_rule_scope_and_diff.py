"""Rules by organisation (parsing, and evaluation that ignores other organisations' rules) and
the field-by-field diff between rule versions shown before publishing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from mecc.clinical.catalogue import load_catalogue
from mecc.clinical.domain import ContactEvent, PersonHistory, RuleDef
from mecc.clinical.rule_diff import diff_bodies, diff_rules, format_changes
from mecc.clinical.rulepack import RulePackError, parse_rule, rule_to_dict
from mecc.clinical.ruleset import RuleSet, build_context, evaluate
from mecc.rules import compile_expression
from tests.support import ROOT

CATALOGUE = load_catalogue(ROOT / "config")


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "key": "local-smoking", "title": "Local smoking offer", "topic": "smoking",
        "kind": "lifestyle_conversation", "when": "smoking_status == 'current'",
        "priority": 50, "prompt": {"summary": "Offer the local stop smoking service"},
    }
    data.update(overrides)
    return data


def rule(**overrides: Any) -> RuleDef:
    return parse_rule(body(**overrides), CATALOGUE)


def contact(organisation: str) -> ContactEvent:
    at = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    ctx = build_context(occurred_at=at, person={"age": 40}, facts={"smoking_status": "current"},
                        conditions=[], setting="general_practice", contact_type="appointment",
                        staff_role="practice_nurse", catalogue=CATALOGUE)
    return ContactEvent(id=f"ev-{organisation}", occurred_at=at, organisation=organisation,
                        setting="general_practice", context=ctx, staff_role="practice_nurse",
                        person_id="p-1")


def ruleset(*rules: RuleDef) -> RuleSet:
    return RuleSet([(r, compile_expression(r.when, CATALOGUE)) for r in rules])


# --- organisations on a rule ------------------------------------------------------------------


def test_organisations_are_ods_codes_upper_cased_and_round_trip() -> None:
    parsed = rule(organisations=["y02345", "A81001"])
    assert parsed.organisations == {"Y02345", "A81001"}
    assert rule_to_dict(parsed)["organisations"] == ["A81001", "Y02345"]
    assert parse_rule(rule_to_dict(parsed), CATALOGUE) == parsed
    assert rule().organisations == frozenset()  # none given: every organisation


@pytest.mark.parametrize(("value", "path"), [
    ("Y02345", "organisations"),
    (["Y0"], "organisations.0"),
    (["Y02345", "y02345"], "organisations.1"),
    ([12345], "organisations.0"),
])
def test_bad_organisations_are_named_by_path(value: Any, path: str) -> None:
    with pytest.raises(RulePackError) as caught:
        rule(organisations=value)
    assert [e["path"] for e in caught.value.errors] == [path]


def test_a_rule_applies_only_to_its_organisations_events() -> None:
    local = rule(organisations=["Y02345"])
    national = rule(key="national-smoking", topic="alcohol", when="smoking_status == 'current'")
    rules = ruleset(local, national)
    here = evaluate(contact("Y02345"), rules, PersonHistory())
    elsewhere = evaluate(contact("A81001"), rules, PersonHistory())
    assert {c.rule.key for c in here.shown} == {"local-smoking", "national-smoking"}
    assert {c.rule.key for c in elsewhere.shown} == {"national-smoking"}
    # Not a match at all elsewhere: nothing of it is stored, suppressed or explained.
    assert [m.rule.key for m in elsewhere.matches] == ["national-smoking"]
    assert elsewhere.suppressed == []


def test_a_rule_set_without_organisation_limits_skips_the_filter() -> None:
    assert not ruleset(rule()).has_organisation_limits
    assert ruleset(rule(), rule(key="other", organisations=["A81001"])).has_organisation_limits


# --- diff ---------------------------------------------------------------------------------------


def test_diff_names_each_changed_field_in_reading_order() -> None:
    old = rule()
    new = replace(old, version=2, priority=60, organisations=frozenset({"Y02345"}),
                  staff_roles=frozenset({"gp"}), summary="Offer the service today",
                  status="active")
    changes = diff_rules(old, new)
    assert [c.field for c in changes] == ["priority", "prompt.summary", "staff_roles",
                                          "organisations"]
    priority = changes[0]
    assert (priority.label, priority.before, priority.after) == ("Priority", 50, 60)
    assert changes[3].to_dict() == {"field": "organisations", "label": "Organisations",
                                    "before": [], "after": ["Y02345"]}


def test_multi_line_text_gets_a_line_diff() -> None:
    old = rule(when="smoking_status == 'current'\n  && age >= 16")
    new = rule(when="smoking_status == 'current'\n  && age >= 18")
    [change] = diff_rules(old, new)
    assert change.lines == ((" ", "smoking_status == 'current'"), ("-", "  && age >= 16"),
                            ("+", "  && age >= 18"))
    text = format_changes([change])
    assert "When (expression) (when):" in text and "-   && age >= 16" in text


def test_same_rule_no_changes_and_nothing_live_lists_every_field() -> None:
    assert diff_rules(rule(), replace(rule(), version=3, status="retired")) == []
    assert {c.field for c in diff_rules(None, rule())} >= {"title", "when", "prompt.summary"}


def test_a_stored_body_without_organisations_equals_one_with_none() -> None:
    stored = rule_to_dict(rule())
    del stored["organisations"]
    assert diff_bodies(stored, rule_to_dict(rule())) == []
    assert [c.field for c in diff_bodies(stored, rule_to_dict(rule(organisations=["Y02345"])))
            ] == ["organisations"]
