"""Publishing with a second pair of eyes (MECC_PUBLISH_APPROVAL=required, the default), and rules
bound to organisations: who may change, publish and approve which rules, and which events a
rule applies to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.factories import assert_problem, auth_header, make_event
from tests.support.processes import Proc
from tests.support.stack import WORKER_REDIS_URL, flush_redis_or_skip
from tests.support.workers import running_worker, wait_for

AUTHOR = ("rules:read", "rules:write")
REVIEWER = ("rules:read", "rules:approve")
BOTH = ("rules:read", "rules:write", "rules:approve")
WRITER = ("events:write", "prompts:read")


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    # A worker test below consumes where the app publishes: a Redis database of its own.
    return {**settings_overrides, "redis_url": WORKER_REDIS_URL}


def rule_body(key: str = "test-rule", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key, "title": "Test rule", "topic": "local_carers_offer",
        "kind": "social_prescribing",
        "when": "is_carer", "priority": 50,
        "prompt": {"summary": "Ask about support for carers", "indicator": "info"},
        "suggestions": ["carers_support"],
    }
    body.update(overrides)
    return body


def audit_actions(client: Any, key: str, rule: str) -> list[tuple[str, str]]:
    items = client.get(f"/api/v1/audit?entity=rule&key={rule}",
                       headers=auth_header(key)).json["items"]
    return [(a["action"], a["actor"]) for a in reversed(items)]


def test_publish_waits_for_someone_else_to_approve(client: Any, make_key: Any) -> None:
    author = make_key(organisation="*", scopes=BOTH, name="author")
    reviewer = make_key(organisation="*", scopes=REVIEWER, name="reviewer")
    assert client.post("/api/v1/rules", json=rule_body(),
                       headers=auth_header(author)).status_code == 201

    asked = client.post("/api/v1/rules/test-rule/publish", json={"version": 1},
                        headers=auth_header(author))
    assert asked.status_code == 202, asked.json
    assert asked.json["status"] == "pending_approval"
    assert asked.json["rule"] == {"key": "test-rule", "version": 1}
    assert asked.json["requested_by"].startswith("author (key ")
    links = asked.json["links"]
    assert links["approve"] == "/api/v1/rules/test-rule/versions/1/approve"
    assert links["reject"] == "/api/v1/rules/test-rule/versions/1/reject"
    state = client.get("/api/v1/rules/test-rule", headers=auth_header(author)).json
    assert (state["status"], state["active_version"]) == ("draft", None)
    assert state["pending_approval"]["version"] == 1
    [pending] = client.get("/api/v1/rule-approvals", headers=auth_header(reviewer)).json["items"]
    assert pending["rule"] == {"key": "test-rule", "version": 1}

    # The requester holds rules:approve too, and still may not approve their own change.
    own = client.post(links["approve"], headers=auth_header(author))
    assert "someone else" in assert_problem(own, 403)["detail"]
    approved = client.post(links["approve"], headers=auth_header(reviewer))
    assert approved.status_code == 200, approved.json
    assert (approved.json["status"], approved.json["active_version"]) == ("active", 1)
    assert approved.json["pending_approval"] is None
    assert client.get("/api/v1/rule-approvals", headers=auth_header(reviewer)).json["items"] == []
    assert client.post(links["approve"], headers=auth_header(reviewer)).status_code == 404

    actions = audit_actions(client, reviewer, "test-rule")
    assert [a for a, _ in actions] == ["version_added", "publish_requested", "approved",
                                       "published"]
    assert actions[1][1].startswith("author (key ")
    assert all(who.startswith("reviewer (key ") for _, who in actions[2:])


def test_reject_leaves_a_draft_and_the_live_version_live(client: Any, make_key: Any) -> None:
    author = make_key(organisation="*", scopes=AUTHOR, name="author")
    reviewer = make_key(organisation="*", scopes=REVIEWER, name="reviewer")
    client.post("/api/v1/rules", json=rule_body(), headers=auth_header(author))
    client.post("/api/v1/rules/test-rule/publish", json={"version": 1},
                headers=auth_header(author))
    client.post("/api/v1/rules/test-rule/versions/1/approve", headers=auth_header(reviewer))
    client.put("/api/v1/rules/test-rule", json=rule_body(priority=90), headers=auth_header(author))
    assert client.post("/api/v1/rules/test-rule/publish", json={"version": 2},
                       headers=auth_header(author)).status_code == 202

    reject = "/api/v1/rules/test-rule/versions/2/reject"
    assert_problem(client.post(reject, json={}, headers=auth_header(reviewer)), 422, "reason")
    # An author without rules:approve cannot approve at all.
    assert_problem(client.post("/api/v1/rules/test-rule/versions/2/approve",
                               headers=auth_header(author)), 403)
    rejected = client.post(reject, json={"reason": "Priority 90 would crowd out smoking."},
                           headers=auth_header(reviewer))
    assert rejected.status_code == 200, rejected.json
    assert (rejected.json["status"], rejected.json["reason"]) == (
        "rejected", "Priority 90 would crowd out smoking.")
    versions = client.get("/api/v1/rules/test-rule/versions",
                          headers=auth_header(author)).json["items"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "active"), (2, "draft")]
    assert client.post("/api/v1/rules/test-rule/versions/2/approve",
                       headers=auth_header(reviewer)).status_code == 404
    last = client.get("/api/v1/audit?entity=rule&key=test-rule",
                      headers=auth_header(author)).json["items"][0]
    assert last["action"] == "rejected"
    assert last["detail"]["reason"] == "Priority 90 would crowd out smoking."
    assert last["actor"].startswith("reviewer (key ")


def test_retire_goes_through_the_same_gate(client: Any, make_key: Any) -> None:
    author = make_key(organisation="*", scopes=AUTHOR, name="author")
    reviewer = make_key(organisation="*", scopes=REVIEWER, name="reviewer")
    client.post("/api/v1/rules", json=rule_body(), headers=auth_header(author))
    client.post("/api/v1/rules/test-rule/publish", json={"version": 1},
                headers=auth_header(author))
    client.post("/api/v1/rules/test-rule/versions/1/approve", headers=auth_header(reviewer))

    asked = client.post("/api/v1/rules/test-rule/retire", headers=auth_header(author))
    assert asked.status_code == 202, asked.json
    assert (asked.json["action"], asked.json["rule"]) == ("retire", {"key": "test-rule",
                                                                     "version": 1})
    still = client.get("/api/v1/rules/test-rule", headers=auth_header(author)).json
    assert (still["rule_status"], still["active_version"]) == ("active", 1)
    done = client.post(asked.json["links"]["approve"], headers=auth_header(reviewer))
    assert (done.json["rule_status"], done.json["active_version"]) == ("retired", None)
    actions = [a for a, _ in audit_actions(client, author, "test-rule")]
    assert actions[-3:] == ["retire_requested", "approved", "retired"]


def test_a_newer_request_supersedes_and_the_diff_shows_what_changes(client: Any,
                                                                    make_key: Any) -> None:
    author = make_key(organisation="*", scopes=AUTHOR, name="author")
    reviewer = make_key(organisation="*", scopes=REVIEWER, name="reviewer")
    client.post("/api/v1/rules", json=rule_body(), headers=auth_header(author))
    client.post("/api/v1/rules/test-rule/publish", json={"version": 1},
                headers=auth_header(author))
    client.post("/api/v1/rules/test-rule/versions/1/approve", headers=auth_header(reviewer))
    for priority in (60, 70):
        client.put("/api/v1/rules/test-rule", json=rule_body(priority=priority),
                   headers=auth_header(author))
    client.post("/api/v1/rules/test-rule/publish", json={"version": 2},
                headers=auth_header(author))
    asked = client.post("/api/v1/rules/test-rule/publish", json={"version": 3},
                        headers=auth_header(author)).json
    everything = client.get("/api/v1/rule-approvals?status=all",
                            headers=auth_header(reviewer)).json["items"]
    assert [(r["rule"]["version"], r["status"]) for r in everything[:2]] == [
        (3, "pending"), (2, "superseded")]
    diff = client.get(asked["links"]["diff"], headers=auth_header(reviewer)).json
    assert (diff["from"], diff["to"]) == (1, 3)
    assert diff["changes"] == [{"field": "priority", "label": "Priority", "before": 50,
                                "after": 70}]
    between = client.get("/api/v1/rules/test-rule/diff?from=2&to=3",
                         headers=auth_header(reviewer)).json
    assert between["changes"][0]["before"] == 60
    # Publishing the live version again changes nothing and needs nobody's approval.
    again = client.post("/api/v1/rules/test-rule/publish", json={"version": 1},
                        headers=auth_header(author))
    assert again.status_code == 200 and again.json["active_version"] == 1


# --- organisations ------------------------------------------------------------------------------


def test_an_organisation_key_manages_only_its_own_organisations_rules(
        client: Any, make_key: Any, seeded: Any) -> None:
    local = make_key(organisation="Y02345", scopes=BOTH, name="Y02345 lead")
    local_reviewer = make_key(organisation="Y02345", scopes=REVIEWER, name="Y02345 cso")
    other_reviewer = make_key(organisation="A81001", scopes=REVIEWER, name="A81001 cso")
    national = make_key(organisation="*", scopes=BOTH, name="national")
    h = auth_header(local)

    for organisations in ([], ["A81001"], ["Y02345", "A81001"]):
        refused = client.post("/api/v1/rules", json=rule_body(organisations=organisations),
                              headers=h)
        assert "Y02345" in assert_problem(refused, 403)["detail"]
    created = client.post("/api/v1/rules", json=rule_body(organisations=["Y02345"]), headers=h)
    assert created.status_code == 201 and created.json["organisations"] == ["Y02345"]
    # Widening its own rule to every organisation is refused too.
    assert_problem(client.put("/api/v1/rules/test-rule", json=rule_body(), headers=h), 403)

    # A rule for every organisation (the seeded pack) is beyond one organisation's key.
    smoking = "smoking-very-brief-advice"
    current = client.get(f"/api/v1/rules/{smoking}", headers=h).json
    assert current["organisations"] == []
    edited = {k: v for k, v in current.items() if k in rule_body()}
    assert_problem(client.put(f"/api/v1/rules/{smoking}", json={**edited, "priority": 1},
                              headers=h), 403)
    assert_problem(client.post(f"/api/v1/rules/{smoking}/publish", json={"version": 1},
                               headers=h), 403)
    assert_problem(client.post(f"/api/v1/rules/{smoking}/retire", headers=h), 403)
    # Asked for by a national key, a retire waits for approval: not this organisation's to give.
    assert client.post(f"/api/v1/rules/{smoking}/retire",
                       headers=auth_header(national)).status_code == 202
    assert_problem(client.post(f"/api/v1/rules/{smoking}/versions/1/approve",
                               headers=auth_header(local_reviewer)), 403)

    # Its own rule: another organisation's reviewer may not approve; its own may.
    client.post("/api/v1/rules/test-rule/publish", json={"version": 1}, headers=h)
    approve = "/api/v1/rules/test-rule/versions/1/approve"
    assert_problem(client.post(approve, headers=auth_header(other_reviewer)), 403)
    assert client.post(approve, headers=auth_header(local_reviewer)).status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_rule_applies_only_to_its_organisations_events(
        client: Any, make_key: Any, evaluate_pending: Any) -> None:
    national = make_key(organisation="*", scopes=AUTHOR, name="national")
    reviewer = make_key(organisation="*", scopes=REVIEWER, name="reviewer")
    writer = make_key(organisation="*", scopes=WRITER)
    client.post("/api/v1/rules", json=rule_body(organisations=["Y02345"]),
                headers=auth_header(national))
    client.post("/api/v1/rules/test-rule/publish", json={"version": 1},
                headers=auth_header(national))
    client.post("/api/v1/rules/test-rule/versions/1/approve", headers=auth_header(reviewer))

    ids = {}
    for organisation in ("Y02345", "A81001"):
        body = make_event(organisation=organisation, facts={"is_carer": True}, conditions=[],
                          person={"id": f"p-{organisation}", "age": 50})
        response = client.post("/api/v1/events", json=body, headers=auth_header(writer))
        ids[organisation] = response.json["id"]
    evaluate_pending()
    got = {org: client.get(f"/api/v1/events/{event_id}", headers=auth_header(writer)).json
           for org, event_id in ids.items()}
    assert "test-rule" in {p["rule"]["key"] for p in got["Y02345"]["prompts"]}
    assert "test-rule" not in {p["rule"]["key"] for p in got["A81001"]["prompts"]}
    assert "test-rule" not in {s["rule"]["key"] for s in got["A81001"]["suppressed"]}


# --- a real worker ------------------------------------------------------------------------------


@pytest.fixture
def worker(seeded: Any, settings_overrides: dict[str, Any], tmp_path: Path) -> Iterator[Proc]:
    flush_redis_or_skip(WORKER_REDIS_URL)
    with running_worker(settings_overrides, tmp_path) as process:
        yield process


def _prompt_after(client: Any, key: str, worker: Proc, person: str) -> dict[str, Any]:
    """POST a smoker's contact and wait for the worker; the smoking prompt it got."""
    body = make_event(person={"id": person, "age": 50}, facts={"smoking_status": "current"},
                      conditions=[], preferences={"opted_out": False, "declined_topics": []})
    event_id = client.post("/api/v1/events", json=body, headers=auth_header(key)).json["id"]

    def probe() -> dict[str, Any] | None:
        detail: dict[str, Any] = client.get(f"/api/v1/events/{event_id}",
                                            headers=auth_header(key)).json
        return detail if detail["status"] == "evaluated" else None

    detail = wait_for(probe, worker, f"event {event_id} evaluated")
    [prompt] = [p for p in detail["prompts"] if p["rule"]["key"] == SMOKING]
    return prompt


SMOKING = "smoking-very-brief-advice"


@pytest.mark.slow
@pytest.mark.commits
def test_a_worker_uses_a_new_version_only_once_it_is_approved(
        client: Any, make_key: Any, worker: Proc) -> None:
    author = make_key(organisation="*", scopes=AUTHOR, name="author")
    reviewer = make_key(organisation="*", scopes=REVIEWER, name="reviewer")
    writer = make_key(organisation="*", scopes=WRITER)
    live = client.get(f"/api/v1/rules/{SMOKING}", headers=auth_header(author)).json
    edited = {k: v for k, v in live.items() if k in rule_body() or k in (
        "cooldown_days", "decline_days", "settings", "staff_roles", "sources", "organisations")}
    edited["prompt"] = {**live["prompt"], "summary": "Smoker: offer the new local service"}
    assert client.put(f"/api/v1/rules/{SMOKING}", json=edited,
                      headers=auth_header(author)).json["version"] == 2
    assert client.post(f"/api/v1/rules/{SMOKING}/publish", json={"version": 2},
                       headers=auth_header(author)).status_code == 202

    before = _prompt_after(client, writer, worker, "p-before")
    assert before["rule"]["version"] == 1 and before["summary"] == live["prompt"]["summary"]

    approved = client.post(f"/api/v1/rules/{SMOKING}/versions/2/approve",
                           headers=auth_header(reviewer))
    assert approved.status_code == 200, approved.json
    after = _prompt_after(client, writer, worker, "p-after")
    assert after["rule"]["version"] == 2
    assert after["summary"] == "Smoker: offer the new local service"
