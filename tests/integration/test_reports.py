"""Outcome reports over HTTP: counts and rates per group, windows, tenancy, parameter errors."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from mecc.clinical.domain import OUTCOMES
from mecc.reports import outcomes as reports
from tests.support.factories import auth_header, make_event, post_event

WRITER = ("events:write", "prompts:read", "prompts:write")
REPORTS = "/api/v1/reports/outcomes"
OTHER_ORG = "A81001"
# Matches five rules of the default pack: three are shown, two deferred (cap of 3).
EVERYTHING = {"smoking_status": "current", "bmi": 33.0, "audit_c": 9, "phq2": 4,
              "activity_minutes_per_week": 10}


def _event(person: str, facts: dict[str, Any], *, at: datetime | None = None,
           **overrides: Any) -> dict[str, Any]:
    body = make_event(person={"id": person, "age": 50}, facts=facts, conditions=[],
                      preferences={"opted_out": False, "declined_topics": []}, **overrides)
    if at is not None:
        body["occurred_at"] = at.isoformat()
    return body


def _prompts(client: Any, key: str, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in {"limit": "500", **filters}.items())
    return list(client.get(f"/api/v1/prompts?{query}", headers=auth_header(key)).json["items"])


def _outcome(client: Any, key: str, prompt_id: str, outcome: str) -> None:
    response = client.post(f"/api/v1/prompts/{prompt_id}/outcome", json={"outcome": outcome},
                           headers=auth_header(key))
    assert response.status_code == 201, response.json


def _report(client: Any, key: str, query: str = "") -> dict[str, Any]:
    response = client.get(f"{REPORTS}?{query}", headers=auth_header(key))
    assert response.status_code == 200, response.json
    return dict(response.json)


# The setting of each person's contact in `scenario` (a prompt does not repeat it).
SETTINGS = {"smoker-3": "community_nursing", "heavy": "community_pharmacy"}


def _expected(prompts: list[dict[str, Any]], field: str) -> dict[str, Counter[str]]:
    """What the report should say, counted in Python from the prompts API."""
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for p in prompts:
        if field == "rule":
            key = p["rule"]["key"]
        elif field == "setting":
            key = SETTINGS.get(p["person_id"], "general_practice")
        else:
            key = p[field]
        groups[key][p["status"]] += 1
    return groups


def _assert_group(row: dict[str, Any], statuses: Counter[str]) -> None:
    created = sum(statuses.values())
    pushed = created - statuses["deferred"]
    with_outcome = sum(statuses[o] for o in OUTCOMES)
    assert row["created"] == created
    assert row["deferred"] == statuses["deferred"]
    assert row["pushed"] == pushed
    assert row["no_outcome"] == statuses["new"]
    assert row["with_outcome"] == with_outcome
    assert row["outcomes"] == {o: statuses[o] for o in OUTCOMES}
    assert row["rates"] == {
        "outcome": round(with_outcome / pushed, 4) if pushed else None,
        "conversation": round(statuses["conversation_had"] / pushed, 4) if pushed else None,
        "referral": round(statuses["referred"] / pushed, 4) if pushed else None,
        "decline": round(statuses["declined"] / pushed, 4) if pushed else None,
    }


@pytest.fixture
def scenario(client: Any, make_key: Any, evaluate_pending: Any) -> dict[str, Any]:
    """Prompts in two organisations with every outcome, some deferred, some without outcome."""
    ours = make_key(scopes=WRITER)
    theirs = make_key(organisation=OTHER_ORG, scopes=WRITER)
    for i in range(4):
        person = f"smoker-{i}"
        post_event(client, ours, _event(person, {"smoking_status": "current"},
                                   setting=SETTINGS.get(person, "general_practice")))
    post_event(client, ours, _event("everything", EVERYTHING))
    post_event(client, ours, _event("heavy", {"bmi": 35.0}, setting=SETTINGS["heavy"]))
    post_event(client, theirs, _event("their-smoker", {"smoking_status": "current"},
                                 organisation=OTHER_ORG))
    assert evaluate_pending() == 7

    smoking = _prompts(client, ours, topic="smoking")
    assert len(smoking) == 5
    for prompt, outcome in zip(smoking, ("conversation_had", "referred", "declined", "not_now"),
                               strict=False):
        _outcome(client, ours, prompt["id"], outcome)
    weight = _prompts(client, ours, topic="healthy_weight")
    _outcome(client, ours, weight[0]["id"], "not_appropriate")
    deferred = _prompts(client, ours, status="deferred")
    assert len(deferred) == 2
    _outcome(client, ours, deferred[0]["id"], "referred")  # a deferred prompt someone acted on
    _outcome(client, theirs, _prompts(client, theirs)[0]["id"], "declined")
    return {"ours": ours, "theirs": theirs, "prompts": _prompts(client, ours),
            "their_prompts": _prompts(client, theirs)}


@pytest.mark.parametrize("group_by", ["topic", "rule", "setting", "organisation"])
def test_counts_and_rates_per_group_match_the_prompts(client: Any, make_key: Any,
                                                      scenario: dict[str, Any],
                                                      group_by: str) -> None:
    everyone = make_key(organisation="*", scopes=("reports:read",))
    prompts = scenario["prompts"] + scenario["their_prompts"]
    report = _report(client, everyone, f"group_by={group_by}")
    expected = _expected(prompts, group_by)
    assert report["group_by"] == group_by and report["organisation"] is None
    assert {row["key"] for row in report["items"]} == set(expected)
    for row in report["items"]:
        _assert_group(row, expected[row["key"]])
    _assert_group(report["totals"], Counter(p["status"] for p in prompts))
    created = [row["created"] for row in report["items"]]
    assert created == sorted(created, reverse=True), "largest groups first"
    assert report["next_cursor"] is None


def test_topic_report_in_numbers(client: Any, make_key: Any, scenario: dict[str, Any]) -> None:
    key = make_key(scopes=("reports:read",))
    report = _report(client, key, "group_by=topic")
    smoking = next(row for row in report["items"] if row["key"] == "smoking")
    assert (smoking["created"], smoking["pushed"], smoking["deferred"]) == (5, 5, 0)
    assert smoking["outcomes"] == {"conversation_had": 1, "referred": 1, "declined": 1,
                                   "not_now": 1, "not_appropriate": 0}
    assert (smoking["with_outcome"], smoking["no_outcome"]) == (4, 1)
    assert smoking["rates"] == {"outcome": 0.8, "conversation": 0.2, "referral": 0.2,
                                "decline": 0.2}
    totals = report["totals"]
    # 4 smokers x1, "everything" x5 (2 deferred, 1 acted on later), "heavy" x1.
    assert (totals["created"], totals["pushed"], totals["deferred"]) == (10, 9, 1)
    assert totals["outcomes"]["referred"] == 2  # one of them on a formerly deferred prompt


def test_an_organisation_bound_key_sees_only_its_own(client: Any, make_key: Any,
                                                     scenario: dict[str, Any]) -> None:
    ours = make_key(scopes=("reports:read",))
    report = _report(client, ours, "group_by=organisation")
    assert [row["key"] for row in report["items"]] == ["Y02345"]
    assert report["organisation"] == "Y02345"
    assert _report(client, ours, "organisation=y02345")["totals"] == report["totals"]

    hidden = client.get(f"{REPORTS}?organisation={OTHER_ORG}", headers=auth_header(ours))
    assert hidden.status_code == 404
    assert hidden.content_type == "application/problem+json"

    everyone = make_key(organisation="*", scopes=("reports:read",))
    theirs = _report(client, everyone, f"group_by=organisation&organisation={OTHER_ORG}")
    assert [row["key"] for row in theirs["items"]] == [OTHER_ORG]
    assert theirs["totals"]["outcomes"]["declined"] == 1


def test_window_is_half_open_on_the_contact_time(client: Any, make_key: Any,
                                                 evaluate_pending: Any) -> None:
    writer = make_key(scopes=WRITER)
    start = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
    for n, at in enumerate((start - timedelta(seconds=1), start, start + timedelta(hours=5),
                            start + timedelta(days=1))):
        post_event(client, writer, _event(f"p-{n}", {"smoking_status": "current"}, at=at))
    evaluate_pending()
    key = make_key(scopes=("reports:read",))
    end = start + timedelta(days=1)
    query = f"from={start.isoformat().replace('+00:00', 'Z')}&to={end.isoformat()}"
    report = _report(client, key, query.replace("+", "%2B"))
    assert report["totals"]["created"] == 2  # at `from` counts, at `to` does not
    assert (report["from"], report["to"]) == ("2026-10-05T10:00:00Z", "2026-10-06T10:00:00Z")
    # Dates mean midnight UTC; an offset is honoured (11:00+01:00 is 10:00Z).
    assert _report(client, key, "from=2026-10-05&to=2026-10-06")["totals"]["created"] == 3
    offset = _report(client, key, "from=2026-10-05T11:00:00%2B01:00&to=2026-10-07")
    assert offset["totals"]["created"] == 3
    # An unencoded "+" arrives as a space; it is still read as the offset.
    spaced = _report(client, key, "from=2026-10-05T11:00:00+01:00&to=2026-10-07")
    assert spaced["from"] == "2026-10-05T10:00:00Z"


def test_default_window_is_the_last_thirty_days(client: Any, make_key: Any,
                                                evaluate_pending: Any) -> None:
    writer = make_key(scopes=WRITER)
    now = datetime.now(UTC)
    post_event(client, writer, _event("recent", {"smoking_status": "current"}))
    post_event(client, writer, _event("old", {"smoking_status": "current"},
                                 at=now - timedelta(days=40)))
    evaluate_pending()
    report = _report(client, make_key(scopes=("reports:read",)), "group_by=day")
    assert report["totals"]["created"] == 1
    days = [row["key"] for row in report["items"]]
    assert len(days) == 30 and days[-1] == now.date().isoformat()
    assert report["to"] == (now.date() + timedelta(days=1)).isoformat() + "T00:00:00Z"


def test_day_groups_use_the_utc_calendar_and_fill_empty_days(client: Any, make_key: Any,
                                                             evaluate_pending: Any,
                                                             app: Any) -> None:
    writer = make_key(scopes=WRITER)
    late = datetime(2026, 10, 5, 23, 30, tzinfo=UTC)
    post_event(client, writer, _event("a", {"smoking_status": "current"}, at=late))
    post_event(client, writer, _event("b", {"smoking_status": "current"},
                                 at=late + timedelta(hours=1)))  # 00:30 on the 6th
    post_event(client, writer, _event("c", {"smoking_status": "current"},
                                 at=late + timedelta(days=2)))
    evaluate_pending()
    report = _report(client, make_key(scopes=("reports:read",)),
                     "group_by=day&from=2026-10-04&to=2026-10-09")
    assert [(row["key"], row["created"]) for row in report["items"]] == [
        ("2026-10-04", 0), ("2026-10-05", 1), ("2026-10-06", 1), ("2026-10-07", 1),
        ("2026-10-08", 0)]
    assert report["items"][0]["rates"]["outcome"] is None

    # The day is the UTC day whatever the database session's own time zone is.
    db = app.extensions["mecc"].db
    with db.session() as session:
        if db.engine.dialect.name == "postgresql":
            session.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))  # UTC+14
        counts = reports.outcome_counts(session, "day", reports.Window(
            datetime(2026, 10, 4, tzinfo=UTC), datetime(2026, 10, 9, tzinfo=UTC)), None)
    assert {k: v["created"] for k, v in counts.items()} == {
        "2026-10-05": 1, "2026-10-06": 1, "2026-10-07": 1}


@pytest.mark.parametrize(("query", "field"), [
    ("group_by=week", "group_by"),
    ("from=yesterday", "from"),
    ("from=2026-13-01", "from"),
    ("to=2026-10-05T10:00:00", "to"),  # no zone offset
    ("from=2026-10-06&to=2026-10-05", "from"),
    ("from=2026-10-05&to=2026-10-05", "from"),
    ("organisation=" + "X" * 17, "organisation"),
])
def test_bad_parameters_are_named(client: Any, make_key: Any, query: str, field: str) -> None:
    response = client.get(f"{REPORTS}?{query}", headers=auth_header(
        make_key(organisation="*", scopes=("reports:read",))))
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert field in response.json["errors"], response.json


def test_reports_need_a_key_with_the_reports_scope(client: Any, make_key: Any) -> None:
    assert client.get(REPORTS).status_code == 401
    wrong = client.get(REPORTS, headers=auth_header(make_key(scopes=("prompts:read",))))
    assert wrong.status_code == 403 and wrong.content_type == "application/problem+json"
