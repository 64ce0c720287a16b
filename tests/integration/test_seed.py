"""Seed never overwrites: `mecc seed` (run by `make run` on every start) fills an empty
installation and afterwards only adds what is new; `mecc rules load` turns a changed rule into
a draft with a diff; `mecc services load` replaces only with --replace. The last test restarts
the real system (`mecc run`: gunicorn, worker, beat) between a publish and a check."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from mecc.cli import main
from tests.support import ROOT
from tests.support.factories import auth_header, make_event
from tests.support.processes import MECC, Proc, free_port, wait_healthy
from tests.support.stack import create_key, new_database, seed, service_env

AUTHOR = ("rules:read", "rules:write")
REVIEWER = ("rules:read", "rules:approve")
SMOKING = "smoking-very-brief-advice"
SERVICE = "example-mcr-stop-smoking"
NEW_SUMMARY = "Smoker: offer the new local stop smoking clinic"
RULE_FIELDS = ("key", "title", "topic", "kind", "when", "priority", "cooldown_days",
               "decline_days", "settings", "staff_roles", "organisations", "prompt",
               "suggestions", "sources")

pytestmark = pytest.mark.commits  # the CLI and the app are separate connections


@pytest.fixture
def mecc(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `mecc ARGS...` against this test's database; its output."""
    monkeypatch.setenv("MECC_DATABASE_URL", database_url)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return run


def edited_rule(rule: dict[str, Any], summary: str = NEW_SUMMARY) -> dict[str, Any]:
    body = {k: v for k, v in rule.items() if k in RULE_FIELDS}
    return {**body, "prompt": {**rule["prompt"], "summary": summary}}


def publish_v2(base_get: Any, base_put: Any, base_post: Any) -> None:
    """Edit the smoking rule's summary as version 2 and have a second key approve it."""
    rule = base_get(f"/api/v1/rules/{SMOKING}", "author")
    assert base_put(f"/api/v1/rules/{SMOKING}", edited_rule(rule), "author")["version"] == 2
    asked = base_post(f"/api/v1/rules/{SMOKING}/publish", {"version": 2}, "author")
    assert asked["status"] == "pending_approval"
    live = base_post(asked["links"]["approve"], None, "reviewer")
    assert live["active_version"] == 2


def test_seed_twice_around_a_publish_keeps_what_was_published(
        client: Any, make_key: Any, mecc: Any) -> None:
    first = mecc("seed")
    assert "Rules: 17 new (17 published, 0 awaiting approval)" in first
    keys = {"author": make_key(organisation="*", scopes=AUTHOR, name="author"),
            "reviewer": make_key(organisation="*", scopes=REVIEWER, name="reviewer"),
            "admin": make_key(organisation="*", scopes=("admin",), name="admin")}

    def get(path: str, who: str) -> Any:
        return client.get(path, headers=auth_header(keys[who])).json

    def put(path: str, body: Any, who: str) -> Any:
        return client.put(path, json=body, headers=auth_header(keys[who])).json

    def post(path: str, body: Any, who: str) -> Any:
        return client.post(path, json=body, headers=auth_header(keys[who])).json

    publish_v2(get, put, post)
    service = get(f"/api/v1/services/{SERVICE}", "admin")
    changed = {**service, "contact": {**service["contact"], "phone": "0161 496 0999"}}
    assert put(f"/api/v1/services/{SERVICE}", changed, "admin")["contact"]["phone"] == \
        "0161 496 0999"
    audit_before = get(f"/api/v1/audit?entity=rule&key={SMOKING}", "admin")["items"]

    again = mecc("seed")
    assert "Rules: 0 new, 17 already installed, left as they are." in again
    assert "Services: 0 new" in again
    rule = get(f"/api/v1/rules/{SMOKING}", "author")
    assert (rule["active_version"], rule["latest_version"]) == (2, 2)
    assert rule["prompt"]["summary"] == NEW_SUMMARY
    assert get(f"/api/v1/audit?entity=rule&key={SMOKING}", "admin")["items"] == audit_before
    assert get(f"/api/v1/services/{SERVICE}", "admin")["contact"]["phone"] == "0161 496 0999"

    # `rules load` of the shipped pack: the smoking rule differs from the installed one, so it
    # becomes draft version 3 with what changed; nothing is published.
    loaded = mecc("rules", "load", str(ROOT / "config" / "rules"))
    assert "Rules: 0 new, 1 with a new draft version, 16 unchanged." in loaded
    assert f"{SMOKING}: new draft version 3" in loaded
    assert "Summary (prompt.summary):" in loaded and f"- {NEW_SUMMARY}" in loaded
    rule = get(f"/api/v1/rules/{SMOKING}", "author")
    assert (rule["active_version"], rule["latest_version"], rule["status"]) == (2, 3, "draft")
    assert rule["pending_approval"] is None

    # Services: the edited one is listed and kept; --replace puts the file's back.
    kept = mecc("services", "load", str(ROOT / "config" / "services"))
    assert "1 kept as installed" in kept and f"{SERVICE}: differs from the file in contact" \
        in kept
    assert get(f"/api/v1/services/{SERVICE}", "admin")["contact"]["phone"] == "0161 496 0999"
    replaced = mecc("services", "load", "--replace", str(ROOT / "config" / "services"))
    assert "1 replaced" in replaced
    assert get(f"/api/v1/services/{SERVICE}", "admin")["contact"]["phone"] == "0161 496 0100"


EXTRA_RULE = """rules:
  - key: extra-carers-offer
    title: Carers - local offer
    topic: carers_local
    kind: social_prescribing
    status: active
    priority: 40
    when: is_carer
    prompt: {summary: Ask about the local carers' centre}
"""
EXTRA_SERVICE = """services:
  - id: example-mcr-new-service
    name: A new service
    service_type: carers_support
"""


def test_seed_adds_only_new_keys_and_a_new_rule_waits_for_approval(
        client: Any, make_key: Any, mecc: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    mecc("seed")
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "rules" / "extra.yaml").write_text(EXTRA_RULE)
    (config / "services" / "extra.yaml").write_text(EXTRA_SERVICE)
    # The file now says something else about an installed rule: seed leaves it alone.
    default = config / "rules" / "default.yaml"
    default.write_text(default.read_text().replace("priority: 70", "priority: 71", 1))
    monkeypatch.setenv("MECC_CONFIG_DIR", str(config))

    out = mecc("seed")
    assert "Rules: 1 new (0 published, 1 awaiting approval), 17 already installed" in out
    assert "Services: 1 new" in out
    reviewer = make_key(organisation="*", scopes=REVIEWER, name="reviewer")
    rules = client.get("/api/v1/rules", headers=auth_header(reviewer)).json["items"]
    assert all(r["latest_version"] == 1 for r in rules)
    extra = next(r for r in rules if r["key"] == "extra-carers-offer")
    assert (extra["rule_status"], extra["pending_approval"]["requested_by"]) == ("draft", "seed")
    approved = client.post("/api/v1/rules/extra-carers-offer/versions/1/approve",
                           headers=auth_header(reviewer))
    assert approved.status_code == 200 and approved.json["rule_status"] == "active"

    monkeypatch.setenv("MECC_PUBLISH_APPROVAL", "off")
    (config / "rules" / "more.yaml").write_text(
        EXTRA_RULE.replace("extra-carers-offer", "more-carers-offer"))
    assert "Rules: 1 new (1 published, 0 awaiting approval), 18 already installed" in \
        mecc("seed")


# --- the real system, restarted ----------------------------------------------------------------


def _request(method: str, url: str, key: str, body: Any = None) -> Any:
    answer = requests.request(method, url, json=body, headers=auth_header(key), timeout=30)
    assert answer.status_code < 300, (method, url, answer.status_code, answer.text)
    return answer.json()


def _start(env: dict[str, str], log_dir: Path, port: int) -> Proc:
    proc = Proc("mecc-run", [MECC, "run", "--workers", "1", "--concurrency", "1"], env, log_dir,
                port=port)
    return wait_healthy(proc, timeout=90)


@pytest.mark.slow
def test_a_restart_of_the_real_system_keeps_the_published_version(
        tmp_path: Path, redis_url: str) -> None:
    database = new_database("sqlite", tmp_path, migrate=False)
    port = free_port()
    env = service_env(database.url, redis_url, tmp_path / "var", MECC_PORT=str(port),
                      MECC_LOG_LEVEL="INFO")
    seed(env)  # as `make run` does before starting
    keys = {"author": create_key(env, "*", AUTHOR).key,
            "reviewer": create_key(env, "*", REVIEWER).key,
            "writer": create_key(env, "*", ("events:write", "prompts:read")).key}
    system = _start(env, tmp_path, port)
    base = system.base
    try:
        publish_v2(lambda path, who: _request("GET", base + path, keys[who]),
                   lambda path, body, who: _request("PUT", base + path, keys[who], body),
                   lambda path, body, who: _request("POST", base + path, keys[who], body))
    finally:
        system.stop(grace=30)

    seed(env)  # `make run` again: seed, then run
    system = _start(env, tmp_path, port)
    try:
        rule = _request("GET", f"{base}/api/v1/rules/{SMOKING}", keys["author"])
        assert (rule["active_version"], rule["latest_version"]) == (2, 2)
        body = make_event(person={"id": "p-after-restart", "age": 50},
                          facts={"smoking_status": "current"}, conditions=[],
                          preferences={"opted_out": False, "declined_topics": []})
        event_id = _request("POST", f"{base}/api/v1/events", keys["writer"], body)["id"]
        deadline = time.monotonic() + 60
        detail = _request("GET", f"{base}/api/v1/events/{event_id}", keys["writer"])
        while detail["status"] != "evaluated" and time.monotonic() < deadline:
            time.sleep(0.3)
            detail = _request("GET", f"{base}/api/v1/events/{event_id}", keys["writer"])
        assert detail["status"] == "evaluated", system.tail()
        [prompt] = [p for p in detail["prompts"] if p["rule"]["key"] == SMOKING]
        assert (prompt["rule"]["version"], prompt["summary"]) == (2, NEW_SUMMARY)
    finally:
        system.stop(grace=30)
