"""Back-tests: request over HTTP, run by the service in-process and by a real worker, poll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mecc.admin import backtest
from tests.support.factories import auth_header, make_event, post_event
from tests.support.stack import BACKTEST_REDIS_URL, flush_redis_or_skip
from tests.support.workers import running_worker, wait_for

RULE = "smoking-very-brief-advice"
WRITER = ("events:write", "prompts:read", "prompts:write")
ADMIN = ("rules:read", "rules:write")
OTHER_ORG = "A81001"
SAMPLE_FIELDS = {"event", "occurred_at", "setting", "organisation", "would_show", "suppressed"}


def _event(person: str, facts: dict[str, Any], at: datetime, **overrides: Any) -> dict[str, Any]:
    preferences = overrides.pop("preferences", {"opted_out": False, "declined_topics": []})
    body = make_event(person={"id": person, "age": 45}, facts=facts, conditions=[],
                      preferences=preferences, **overrides)
    body["occurred_at"] = at.isoformat()
    return body


@pytest.fixture
def history(client: Any, make_key: Any, evaluate_pending: Any) -> dict[str, str]:
    """Stored events over the last weeks in two organisations, evaluated by the live rules.

    For the smoking rule over 30 days: seven events scanned (one is 40 days old), six match,
    three would show; one each suppressed as same_day, declined_recently and opted_out.
    """
    writer = make_key(organisation="*", scopes=WRITER)
    now = datetime.now(UTC)
    smoker = {"smoking_status": "current"}
    day5, day3 = now - timedelta(days=5), now - timedelta(days=3)
    ids = {
        "a-morning": post_event(client, writer, _event("p-a", smoker, day5)),
        "a-later": post_event(client, writer, _event("p-a", smoker, day5 + timedelta(minutes=30),
                                                setting="community_pharmacy")),
        "b-first": post_event(client, writer, _event("p-b", smoker, day3)),
        "b-again": post_event(client, writer, _event("p-b", smoker, now - timedelta(days=1))),
        "c-opted-out": post_event(client, writer, _event(
            "p-c", smoker, now - timedelta(days=2),
            preferences={"opted_out": True, "declined_topics": []})),
        "d-non-smoker": post_event(client, writer, _event("p-d", {"smoking_status": "never"},
                                                     now - timedelta(days=2))),
        "e-too-old": post_event(client, writer, _event("p-e", smoker, now - timedelta(days=40))),
        "f-other-org": post_event(client, writer, _event("p-f", smoker, now - timedelta(days=2),
                                                    organisation=OTHER_ORG)),
    }
    assert evaluate_pending() == 8
    # p-b declines the prompt of the first contact after the fact: a back-test run now sees
    # the decline and suppresses the second contact (the live evaluation did not know yet).
    prompts = client.get(f"/api/v1/prompts?event={ids['b-first']}",
                         headers=auth_header(writer)).json["items"]
    response = client.post(f"/api/v1/prompts/{prompts[0]['id']}/outcome",
                           json={"outcome": "declined"}, headers=auth_header(writer))
    assert response.status_code == 201
    return ids


def _start(client: Any, key: str, body: dict[str, Any] | None = None,
           rule: str = RULE) -> Any:
    return client.post(f"/api/v1/rules/{rule}/backtest", json=body or {"days": 30},
                       headers=auth_header(key))


def test_backtest_runs_the_rule_alone_with_suppression(client: Any, make_key: Any, app: Any,
                                                       redis_url: str, history: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key(organisation="*", scopes=("rules:read",))
    started = _start(client, key, {"version": 1, "days": 30})
    assert started.status_code == 202, started.json
    body = started.json
    assert body["status"] == "queued" and body["result"] is None
    assert body["links"]["self"] == f"/api/v1/backtests/{body['id']}"
    assert started.headers["Location"] == body["links"]["self"]
    assert (body["rule"], body["days"], body["organisation"]) == (
        {"key": RULE, "version": 1}, 30, "*")

    monkeypatch.setattr(backtest, "CHUNK", 2)  # several fetches; history crosses chunks
    runtime = app.extensions["mecc"]
    assert backtest.run_backtest(runtime, body["id"]) == "done"
    done = client.get(body["links"]["self"], headers=auth_header(key)).json
    assert done["status"] == "done" and done["error"] is None
    assert done["started_at"] and done["finished_at"]
    result = done["result"]
    assert result["complete"] is True and result["suppression_applied"] is True
    assert result["rule"] == {"key": RULE, "version": 1}
    totals = result["totals"]
    assert (totals["events_scanned"], totals["matches"], totals["would_show"]) == (7, 6, 3)
    assert totals["suppressed"] == {"declined_recently": 1, "opted_out": 1, "same_day": 1}
    assert totals["errors"] == 0
    assert totals["would_show_per_day"] == 0.1

    assert len(result["per_day"]) == 31  # every day of the window, partial ends included
    day5 = (datetime.now(UTC) - timedelta(days=5)).date().isoformat()
    by_day = {d["day"]: d for d in result["per_day"]}
    assert by_day[day5] == {"day": day5, "events": 2, "matches": 2, "would_show": 1}
    assert sum(d["events"] for d in result["per_day"]) == 7
    settings = {s["setting"]: s for s in result["per_setting"]}
    assert settings["community_pharmacy"] == {"setting": "community_pharmacy", "events": 1,
                                              "matches": 1, "would_show": 0}
    assert settings["general_practice"]["events"] == 6
    organisations = {o["organisation"]: o for o in result["per_organisation"]}
    assert organisations[OTHER_ORG] == {"organisation": OTHER_ORG, "events": 1, "matches": 1,
                                        "would_show": 1}
    assert organisations["Y02345"]["matches"] == 5

    sample = result["sample"]
    assert len(sample) == 6
    assert all(set(s) == SAMPLE_FIELDS for s in sample), "no person data in the sample"
    assert sample[0]["event"] == history["b-again"]  # most recent first
    assert sample[0]["suppressed"] == "declined_recently" and not sample[0]["would_show"]
    assert history["e-too-old"] not in {s["event"] for s in sample}

    # Running it again (a redelivered task) changes nothing.
    assert backtest.run_backtest(runtime, body["id"]) == "done"
    again = client.get(body["links"]["self"], headers=auth_header(key)).json
    assert again["finished_at"] == done["finished_at"]


def test_an_organisation_bound_key_backtests_only_its_own_events(
        client: Any, make_key: Any, app: Any, redis_url: str, history: dict[str, str]) -> None:
    ours = make_key(scopes=("rules:write",))
    started = _start(client, ours).json
    assert started["organisation"] == "Y02345"
    backtest.run_backtest(app.extensions["mecc"], started["id"])
    result = client.get(started["links"]["self"], headers=auth_header(ours)).json["result"]
    assert (result["totals"]["events_scanned"], result["totals"]["matches"]) == (6, 5)
    assert [o["organisation"] for o in result["per_organisation"]] == ["Y02345"]

    # Another organisation's back-test, and one over every organisation, are not visible.
    theirs = make_key(organisation=OTHER_ORG, scopes=("rules:read",))
    assert client.get(started["links"]["self"], headers=auth_header(theirs)).status_code == 404
    everyone = make_key(organisation="*", scopes=("rules:read",))
    wide = _start(client, everyone).json
    hidden = client.get(wide["links"]["self"], headers=auth_header(ours))
    assert hidden.status_code == 404 and hidden.content_type == "application/problem+json"
    assert _start(client, ours, {"days": 7, "organisation": OTHER_ORG}).status_code == 404

    narrowed = _start(client, everyone, {"days": 30, "organisation": OTHER_ORG}).json
    assert narrowed["organisation"] == OTHER_ORG
    backtest.run_backtest(app.extensions["mecc"], narrowed["id"])
    result = client.get(narrowed["links"]["self"], headers=auth_header(theirs)).json["result"]
    assert result["totals"]["events_scanned"] == 1


def test_a_backtest_out_of_time_keeps_what_it_counted(client: Any, make_key: Any, app: Any,
                                                      redis_url: str,
                                                      history: dict[str, str]) -> None:
    key = make_key(organisation="*", scopes=("rules:read",))
    started = _start(client, key).json
    assert backtest.run_backtest(app.extensions["mecc"], started["id"],
                                 budget_seconds=-1) == "done"
    result = client.get(started["links"]["self"], headers=auth_header(key)).json["result"]
    assert result["complete"] is False
    assert result["totals"]["events_scanned"] == 0


def test_a_draft_version_can_be_backtested(client: Any, make_key: Any, app: Any,
                                           redis_url: str, history: dict[str, str]) -> None:
    key = make_key(organisation="*", scopes=ADMIN)
    current = client.get(f"/api/v1/rules/{RULE}", headers=auth_header(key)).json
    draft = {k: v for k, v in current.items() if k not in (
        "version", "status", "updated_by", "updated_at", "rule_status", "active_version",
        "latest_version")}
    draft["settings"] = ["community_pharmacy"]
    saved = client.put(f"/api/v1/rules/{RULE}", json=draft, headers=auth_header(key))
    assert saved.status_code == 200, saved.json
    started = _start(client, key, {"version": saved.json["version"], "days": 30}).json
    backtest.run_backtest(app.extensions["mecc"], started["id"])
    totals = client.get(started["links"]["self"], headers=auth_header(key)).json["result"][
        "totals"]
    assert totals["would_show"] == 0  # the pharmacy contact was the same day as a GP prompt
    assert totals["suppressed"]["setting"] == 5


@pytest.mark.parametrize(("body", "field"), [
    ({"days": 0}, "days"),
    ({"days": 366}, "days"),
    ({"days": "30"}, "days"),
    ({"version": 0}, "version"),
    ({"version": 99}, "version"),
    ({"days": 30, "colour": "blue"}, "colour"),
])
def test_bad_requests_are_named(client: Any, make_key: Any, seeded: Any, body: dict[str, Any],
                                field: str) -> None:
    response = _start(client, make_key(scopes=("rules:read",)), body)
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert field in response.json["errors"], response.json


def test_unknown_rules_backtests_and_keys(client: Any, make_key: Any, seeded: Any) -> None:
    key = make_key(scopes=("rules:read",))
    assert _start(client, key, rule="no-such-rule").status_code == 404
    missing = client.get("/api/v1/backtests/6f1c2b1e-8f7a-4c53-9e55-1c0d1f0e9a11",
                         headers=auth_header(key))
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    assert client.post(f"/api/v1/rules/{RULE}/backtest", json={"days": 3}).status_code == 401
    assert _start(client, make_key(scopes=("reports:read",))).status_code == 403


@pytest.mark.slow
@pytest.mark.commits  # a worker process reads the rows
class TestWithARealWorker:
    @pytest.fixture
    def settings_overrides(self, settings_overrides: dict[str, Any]) -> dict[str, Any]:
        flush_redis_or_skip(BACKTEST_REDIS_URL)
        return {**settings_overrides, "redis_url": BACKTEST_REDIS_URL}

    def test_a_worker_process_runs_the_backtest(self, client: Any, make_key: Any,
                                                settings_overrides: dict[str, Any],
                                                history: dict[str, str],
                                                tmp_path: Path) -> None:
        key = make_key(organisation="*", scopes=("rules:read",))
        with running_worker(settings_overrides, tmp_path) as worker:
            started = _start(client, key)
            assert started.status_code == 202, started.json

            def finished() -> dict[str, Any] | None:
                polled = client.get(started.json["links"]["self"], headers=auth_header(key))
                body: dict[str, Any] = polled.json
                return body if body["status"] in ("done", "failed") else None

            done = wait_for(finished, worker, "the back-test to finish", timeout=60)
        assert done["status"] == "done", (done, worker.tail())
        totals = done["result"]["totals"]
        assert (totals["events_scanned"], totals["matches"], totals["would_show"]) == (7, 6, 3)
        assert "mecc.run_backtest" in worker.log_text()
