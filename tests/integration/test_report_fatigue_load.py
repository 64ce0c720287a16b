"""Alert fatigue (which rules staff mostly override) and staff load (prompts per member of
staff per day), over HTTP on SQLite and PostgreSQL; the back-test's per-clinician budget."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mecc.admin import backtest
from mecc.reports import fatigue
from mecc.store.models import Backtest
from tests.support.factories import add_prompt, auth_header, make_event, post_event

START = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
WINDOW = "from=2026-11-05&to=2026-12-05"
READER = ("reports:read",)


def _add(app: Any, rule: str, statuses: dict[str, int], **fields: Any) -> None:
    with app.extensions["mecc"].db.session() as session:
        n = 0
        for status, count in statuses.items():
            for _ in range(count):
                add_prompt(session, at=START + timedelta(hours=n), rule_key=rule,
                           status=status, **fields)
                n += 1
        session.commit()


def _get(client: Any, key: str, path: str, **headers: str) -> Any:
    response = client.get(f"/api/v1/reports/{path}", headers={**auth_header(key), **headers})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


@pytest.fixture
def fatigue_data(app: Any) -> None:
    # Mostly overridden, and enough prompts: flagged (15 of 18 with an outcome).
    _add(app, "mostly-declined", {"declined": 8, "not_now": 4, "not_appropriate": 3,
                                  "conversation_had": 3, "new": 2, "deferred": 6})
    # Always declined but only 19 pushed: too few to judge.
    _add(app, "few-prompts", {"declined": 19, "deferred": 4})
    # Mostly acted on.
    _add(app, "well-used", {"conversation_had": 15, "referred": 5, "declined": 10})
    # Another organisation's rule never reaches a bound key's report.
    _add(app, "theirs", {"declined": 30}, organisation="A81001")


def test_rules_mostly_overridden_are_flagged(app: Any, client: Any, make_key: Any,
                                             fatigue_data: None) -> None:
    report = _get(client, make_key(scopes=READER), f"rule-fatigue?{WINDOW}").json
    assert report["thresholds"] == {"override_rate": 0.7, "min_prompts": 20}
    rows = {r["rule"]: r for r in report["items"]}
    assert set(rows) == {"mostly-declined", "few-prompts", "well-used"}
    assert rows["mostly-declined"] | {"title": None} == {
        "rule": "mostly-declined", "title": None, "topic": "smoking", "pushed": 20,
        "with_outcome": 18, "declined": 8, "not_appropriate": 3, "not_now": 4,
        "no_outcome": 2, "override_rate": round(15 / 18, 4), "flagged": True}
    assert (rows["few-prompts"]["override_rate"], rows["few-prompts"]["flagged"]) == (1.0, False)
    assert (rows["well-used"]["override_rate"], rows["well-used"]["flagged"]) == (0.3333, False)
    assert report["flagged"] == 1
    assert report["items"][0]["rule"] == "mostly-declined", "flagged rules first"


def test_fatigue_thresholds_come_from_the_settings(app: Any, client: Any, make_key: Any,
                                                   fatigue_data: None) -> None:
    runtime = app.extensions["mecc"]
    runtime.settings = replace(runtime.settings, fatigue_override_rate=0.3,
                               fatigue_min_prompts=19)
    report = _get(client, make_key(scopes=READER), f"rule-fatigue?{WINDOW}").json
    assert {r["rule"] for r in report["items"] if r["flagged"]} == {
        "mostly-declined", "few-prompts", "well-used"}


def test_fatigue_flags_reach_prometheus(app: Any, client: Any, fatigue_data: None) -> None:
    with app.extensions["mecc"].db.session() as session:  # inside the gauges' 30 days
        for n in range(25):
            add_prompt(session, at=datetime.now(UTC) - timedelta(days=1, minutes=n),
                       rule_key="recent-nuisance", status="not_appropriate")
        session.commit()
    fatigue.refresh_gauges(app.extensions["mecc"], force=True)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'mecc_rule_fatigue_flagged{rule="recent-nuisance"} 1.0' in text
    assert 'mecc_rule_override_rate{rule="recent-nuisance"} 1.0' in text


def test_fatigue_csv_equals_json(app: Any, client: Any, make_key: Any,
                                 fatigue_data: None) -> None:
    key = make_key(scopes=READER)
    report = _get(client, key, f"rule-fatigue?{WINDOW}").json
    text = _get(client, key, f"rule-fatigue?{WINDOW}", Accept="text/csv").get_data(as_text=True)
    table = list(csv.DictReader(io.StringIO(text)))
    assert [line["rule"] for line in table] == [r["rule"] for r in report["items"]]
    for line, row in zip(table, report["items"], strict=True):
        for name in ("pushed", "with_outcome", "declined", "not_appropriate", "not_now",
                     "no_outcome", "override_rate"):
            assert line[name] == str(row[name])
        assert line["flagged"] == ("yes" if row["flagged"] else "no")


def _staff_day(app: Any, staff: str | None, team: str | None, day: int, count: int,
               status: str = "new") -> None:
    with app.extensions["mecc"].db.session() as session:
        for n in range(count):
            add_prompt(session, at=START + timedelta(days=day, minutes=n), staff_id=staff,
                       team=team, status=status)
        session.commit()


def test_staff_load_per_member_of_staff_per_day(app: Any, client: Any, make_key: Any) -> None:
    # blue: st-1 gets 3 then 5 prompts on two days, st-2 gets 1; red: st-3 gets 10.
    for staff, team, day, count in (("st-1", "blue", 0, 3), ("st-1", "blue", 1, 5),
                                    ("st-2", "blue", 0, 1), ("st-3", "red", 0, 10)):
        _staff_day(app, staff, team, day, count)
    _staff_day(app, "st-2", "blue", 0, 7, status="deferred")  # never pushed: not load
    _staff_day(app, None, "blue", 2, 4)  # no staff id: counted apart
    # st-4's contacts on day 3 name two teams: one staff-day of 3, under "blue".
    _staff_day(app, "st-4", "red", 3, 1)
    _staff_day(app, "st-4", "blue", 3, 2)
    key = make_key(scopes=READER)
    report = _get(client, key, f"staff-load?{WINDOW}").json
    # Staff-days: 1, 3, 3, 5, 10 -> median 3, p90 8 (interpolated), max 10.
    assert report["per_staff_day"] == {"median": 3.0, "p90": 8.0, "max": 10}
    assert (report["staff"], report["staff_days"], report["pushed"],
            report["without_staff"]) == (4, 5, 26, 4)
    teams = {t["team"]: t for t in report["teams"]}
    assert teams["blue"] == {"team": "blue", "staff": 3, "staff_days": 4, "pushed": 12,
                             "median": 3.0, "p90": 4.4, "max": 5}
    assert teams["red"]["median"] == teams["red"]["max"] == 10
    text = _get(client, key, f"staff-load?{WINDOW}", Accept="text/csv").get_data(as_text=True)
    lines = list(csv.DictReader(io.StringIO(text)))
    assert lines[0] == {"team": "All", "staff": "4", "staff_days": "5", "pushed": "22",
                        "median": "3.0", "p90": "8.0", "max": "10"}
    assert {line["team"] for line in lines[1:]} == {"blue", "red"}


def test_reports_need_the_scope_and_hide_other_organisations(client: Any,
                                                             make_key: Any) -> None:
    for path in ("rule-fatigue", "staff-load", "referrals"):
        assert client.get(f"/api/v1/reports/{path}").status_code == 401
        wrong = client.get(f"/api/v1/reports/{path}",
                           headers=auth_header(make_key(scopes=("prompts:read",))))
        assert wrong.status_code == 403
        hidden = client.get(f"/api/v1/reports/{path}?organisation=A81001",
                            headers=auth_header(make_key(scopes=READER)))
        assert hidden.status_code == 404
        backwards = client.get(f"/api/v1/reports/{path}?from=2026-11-05&to=2026-11-01",
                               headers=auth_header(make_key(scopes=READER)))
        assert backwards.status_code == 422 and "from" in backwards.json["errors"]


def test_backtests_say_what_a_rule_would_add_per_clinician_per_day(
        app: Any, client: Any, make_key: Any, evaluate_pending: Any) -> None:
    writer = make_key()
    now = datetime.now(UTC)
    day2, day1 = now - timedelta(days=2), now - timedelta(days=1)
    contacts = [("st-a", day2, "current"), ("st-a", day2, "current"), ("st-a", day2, "never"),
                ("st-a", day1, "current"), ("st-b", day1, "never"), ("st-b", day2, "current")]
    for n, (staff, at, smoking) in enumerate(contacts):
        body = make_event(person={"id": f"p-{n}", "age": 40}, facts={"smoking_status": smoking},
                          conditions=[], staff={"id": staff, "role": "practice_nurse"},
                          preferences={"opted_out": False, "declined_topics": []})
        body["occurred_at"] = (at + timedelta(minutes=n)).isoformat()
        post_event(client, writer, body)
    runtime = app.extensions["mecc"]
    with runtime.db.session() as session:
        row = Backtest(rule_key="smoking-very-brief-advice", version=1, days=7,
                       organisation="Y02345", status="queued", requested_by="test")
        session.add(row)
        session.commit()
        backtest_id = row.id
    evaluate_pending()  # loads the rule pack; the back-test reads the stored events
    assert backtest.run_backtest(runtime, backtest_id) == "done"
    with runtime.db.session() as session:
        result = session.get(Backtest, backtest_id).result
    # Staff-days with a contact: st-a day2 (2 would show), st-a day1 (1), st-b day1 (0),
    # st-b day2 (1) -> median 1, p90 1.7, max 2.
    assert result["totals"]["per_clinician_day"] == {"median": 1.0, "p90": 1.7, "max": 2,
                                                     "staff_days": 4}
