"""Rules over HTTP and the CLI: validate, dry-run, versions, publish, retire, audit, round trip.

Publishing here acts at once (MECC_PUBLISH_APPROVAL=off); approval is in test_rule_approval.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mecc.cli import main
from tests.support import ROOT
from tests.support.factories import auth_header, make_event

ADMIN = ("rules:read", "rules:write")


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "publish_approval": "off"}


def _rule(key: str = "test-rule", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key, "title": "Test rule", "topic": "smoking", "kind": "lifestyle_conversation",
        "when": "smoking_status == 'current'", "priority": 50,
        "prompt": {"summary": "Talk about smoking", "detail": "Ask, advise, act.",
                   "indicator": "info"},
        "suggestions": ["stop_smoking"],
        "sources": [{"label": "NICE NG209", "url": "https://www.nice.org.uk/guidance/ng209"}],
    }
    body.update(overrides)
    return body


def test_validate_reports_position_and_hint(client: Any, make_key: Any) -> None:
    key = make_key(organisation="*", scopes=ADMIN)
    ok = client.post("/api/v1/rules/validate", json={"when": "bmi >= 30.0 && age >= 18"},
                     headers=auth_header(key))
    assert ok.status_code == 200 and ok.json == {"ok": True, "errors": []}
    bad = client.post("/api/v1/rules/validate", json={"when": "age >= 18 &&\n  bmj >= 30"},
                      headers=auth_header(key)).json
    assert bad["ok"] is False
    [error] = bad["errors"]
    assert (error["line"], error["column"]) == (2, 3)
    assert "bmi" in error["hint"]
    chained = client.post("/api/v1/rules/validate", json={"when": "18 <= age <= 65"},
                          headers=auth_header(key)).json
    assert not chained["ok"] and "chained" in chained["errors"][0]["message"]
    missing = client.post("/api/v1/rules/validate", json={}, headers=auth_header(key))
    assert missing.status_code == 422 and "when" in missing.json["errors"]


def test_lifecycle_draft_publish_new_version_retire_and_audit(client: Any,
                                                              make_key: Any) -> None:
    key = make_key(organisation="*", scopes=ADMIN)
    h = auth_header(key)
    created = client.post("/api/v1/rules", json=_rule(), headers=h)
    assert created.status_code == 201, created.json
    assert (created.json["version"], created.json["status"]) == (1, "draft")
    assert client.post("/api/v1/rules", json=_rule(), headers=h).status_code == 409

    published = client.post("/api/v1/rules/test-rule/publish", json={"version": 1}, headers=h)
    assert published.json["status"] == "active"
    v2 = client.put("/api/v1/rules/test-rule", json=_rule(priority=60), headers=h).json
    assert (v2["version"], v2["status"], v2["active_version"]) == (2, "draft", 1)
    client.post("/api/v1/rules/test-rule/publish", json={"version": 2}, headers=h)
    versions = client.get("/api/v1/rules/test-rule/versions", headers=h).json["items"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "retired"), (2, "active")]
    assert client.get("/api/v1/rules?status=active", headers=h).json["items"][0]["priority"] \
        == 60

    retired = client.post("/api/v1/rules/test-rule/retire", headers=h).json
    assert retired["rule_status"] == "retired" and retired["active_version"] is None
    audit = client.get("/api/v1/audit?entity=rule&key=test-rule", headers=h).json["items"]
    assert [a["action"] for a in audit] == ["retired", "published", "version_added",
                                           "published", "version_added"]
    assert all(a["actor"].startswith("test (key ") for a in audit)
    assert client.post("/api/v1/rules/nope/publish", json={"version": 1},
                       headers=h).status_code == 404
    assert client.post("/api/v1/rules/test-rule/publish", json={"version": 9},
                       headers=h).status_code == 404


def test_bad_rule_bodies_name_the_field(client: Any, make_key: Any) -> None:
    key = make_key(organisation="*", scopes=ADMIN)
    body = _rule(when="smoking_status == 'curent'", priority=101,
                 prompt={"summary": "x" * 141, "detail": "", "indicator": "loud"})
    response = client.post("/api/v1/rules", json=body, headers=auth_header(key))
    assert response.status_code == 422
    errors = response.json["errors"]
    assert {"when", "priority", "prompt.summary", "prompt.indicator"} <= set(errors), errors
    assert "current" in " ".join(errors["when"])


def test_scopes_for_rules(client: Any, make_key: Any) -> None:
    reader = make_key(scopes=("rules:read",))
    assert client.post("/api/v1/rules", json=_rule(), headers=auth_header(reader)
                       ).status_code == 403
    staff = make_key(scopes=("prompts:read",))
    assert client.get("/api/v1/rules", headers=auth_header(staff)).status_code == 403
    assert client.get("/api/v1/audit?entity=key", headers=auth_header(reader)
                      ).status_code == 422


def test_dry_run_explains_and_stores_nothing(client: Any, make_key: Any, seeded: Any) -> None:
    key = make_key(organisation="*", scopes=ADMIN)
    event = make_event(facts={"smoking_status": "current", "bmi": 26.0},
                       conditions=[], preferences={"declined_topics": ["smoking"]})
    event["person"]["ethnicity_group"] = "white"
    response = client.post("/api/v1/rules/dry-run", json={"events": [event]},
                           headers=auth_header(key))
    assert response.status_code == 200, response.json
    [result] = response.json["results"]
    assert [m["rule"]["key"] for m in result["matches"]] == [
        "smoking-very-brief-advice", "healthy-weight-conversation"]
    smoking = result["matches"][0]["explanation"]
    assert {"condition": "smoking_status == 'current'", "line": 1, "column": 14,
            "value": True} in smoking
    assert [s["rule"]["key"] for s in result["shown"]] == ["healthy-weight-conversation"]
    assert result["shown"][0]["summary"]
    assert [(s["rule"]["key"], s["reason_code"]) for s in result["suppressed"]] == [
        ("smoking-very-brief-advice", "declined_topic")]
    listed = client.get("/api/v1/prompts", headers=auth_header(make_key()))
    assert listed.json["items"] == []


def test_dry_run_with_a_draft_and_a_sequence(client: Any, make_key: Any, seeded: Any) -> None:
    key = make_key(organisation="*", scopes=ADMIN)
    draft = _rule("draft-carer", topic="carers", when="is_carer && age >= 18", priority=99,
                  suggestions=["carers_support"])
    first = make_event(facts={"is_carer": True}, conditions=[])
    second = make_event(facts={"is_carer": True}, conditions=[])
    body = {"rules": [draft, "smoking-very-brief-advice"], "events": [first, second]}
    result = client.post("/api/v1/rules/dry-run", json=body, headers=auth_header(key)).json
    assert result["rules"] == [{"key": "draft-carer", "version": 1},
                               {"key": "smoking-very-brief-advice", "version": 1}]
    one, two = result["results"]
    assert [s["rule"]["key"] for s in one["shown"]] == ["draft-carer"]
    assert [(s["rule"]["key"], s["reason_code"]) for s in two["suppressed"]] == [
        ("draft-carer", "same_day")]
    bad = client.post("/api/v1/rules/dry-run", json={"events": [{"x": 1}]},
                      headers=auth_header(key))
    assert bad.status_code == 422 and "events.0.event_id" in bad.json["errors"]


def test_cli_load_export_validate_round_trip(database_url: str, tmp_path: Path,
                                             monkeypatch: Any) -> None:
    monkeypatch.setenv("MECC_DATABASE_URL", database_url)
    runner = CliRunner()
    pack = ROOT / "config" / "rules"
    assert runner.invoke(main, ["rules", "validate", str(pack)]).output.strip() == "17 rules OK"
    loaded = runner.invoke(main, ["rules", "load", str(pack)])
    assert loaded.exit_code == 0, loaded.output
    assert "Rules: 17 new (17 published, 0 awaiting approval), 0 unchanged." in loaded.output
    again = runner.invoke(main, ["rules", "load", str(pack)])
    assert again.output.strip() == "Rules: 0 new, 17 unchanged."
    exported = runner.invoke(main, ["rules", "export"])
    assert exported.exit_code == 0
    out = tmp_path / "export.yaml"
    out.write_text(exported.output)
    assert runner.invoke(main, ["rules", "validate", str(out)]).exit_code == 0
    original = {r["key"]: r for r in yaml.safe_load((pack / "default.yaml").read_text())["rules"]}
    for rule in yaml.safe_load(exported.output)["rules"]:
        source = original[rule["key"]]
        for field in ("title", "topic", "kind", "when", "priority", "cooldown_days",
                      "decline_days", "prompt", "suggestions", "sources", "status"):
            assert rule[field] == source[field], (rule["key"], field)
        assert sorted(rule["staff_roles"]) == sorted(source.get("staff_roles", []))
    assert runner.invoke(main, ["rules", "load", str(out)]).output.strip() == \
        "Rules: 0 new, 17 unchanged."

    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - key: x\n    when: 'bmi >'\n")
    result = runner.invoke(main, ["rules", "validate", str(broken)])
    assert result.exit_code == 1
