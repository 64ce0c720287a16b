"""person.display: held for direct care only. Returned on prompts (and stream messages, see
test_stream.py and the browser tests), never logged, never in reports, exports, back-tests,
dry-runs, the audit log or referrals, never in another source's webhooks, held in exactly one
place, and erased MECC_DISPLAY_RETENTION_HOURS after the contact."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from mecc.admin import backtest
from mecc.delivery import webhooks
from mecc.intake import display
from mecc.reports import outcomes as outcome_reports
from mecc.store.models import Event, WebhookDelivery
from tests.support.factories import assert_problem, auth_header, make_event, post_event

ANN = "Ann Example, 54 F, MRN 1234"
ANN_ELSEWHERE = "EXAMPLE Ann (pharmacy)"
SECRET_WORD = "MRN 1234"  # any trace of the label, whole or in part


def _event(source: str, label: str, **overrides: Any) -> dict[str, Any]:
    """A smoker with a BMI of 33 (two prompts), labelled, calling back; None drops a field."""
    body = make_event(source=source, callback_url="https://hooks.example/mecc",
                      person={"id": f"{source}-person", "nhs_number": "9434765919",
                              "birth_date": "1971-04-02", "sex": "female",
                              "postcode_district": "M14", "display": label},
                      facts={"smoking_status": "current", "bmi": 33.0}, conditions=[],
                      preferences={"opted_out": False, "declined_topics": []})
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def test_a_prompt_says_whose_it_is_and_when(client: Any, make_key: Any,
                                            evaluate_pending: Any) -> None:
    key = make_key(name="practice screen")
    occurred = datetime.now(UTC) - timedelta(minutes=12)
    body = _event("emis-web", ANN, occurred_at=occurred.isoformat(), callback_url=None,
                  fact_dates={"bmi": (occurred - timedelta(days=20)).date().isoformat()})
    event_id = post_event(client, key, body)
    evaluate_pending()
    prompts = client.get(f"/api/v1/prompts?event={event_id}", headers=auth_header(key)).json
    weight = next(p for p in prompts["items"] if p["topic"] == "healthy_weight")
    age = occurred.year - 1971 - ((occurred.month, occurred.day) < (4, 2))
    assert weight["person"] == {"id": "emis-web-person", "display": ANN, "age": age,
                                "sex": "female"}
    assert weight["contact"] == {"occurred_at": occurred.isoformat().replace("+00:00", "Z"),
                                 "setting": "general_practice", "contact_type": "appointment"}
    assert {"fact": "bmi", "value": 33.0,
            "recorded_at": (occurred - timedelta(days=20)).date().isoformat()} in weight[
        "evidence"]
    assert weight["source"] == "emis-web" and weight["last_outcome"] is None
    detail = client.get(f"/api/v1/events/{event_id}", headers=auth_header(key)).json
    assert detail["person"]["display"] == ANN

    # The latest outcome travels with the prompt: what, where, who recorded it (not the note).
    answer = client.post(f"/api/v1/prompts/{weight['id']}/outcome", headers=auth_header(key),
                         json={"outcome": "referred", "service_id": "nhs-weight-loss-plan",
                               "note": "Interested in the app"}).json
    last = answer["last_outcome"]
    assert (last["outcome"], last["service_id"], last["staff_id"], last["recorded_by"]) == (
        "referred", "nhs-weight-loss-plan", None, "practice screen")
    assert "note" not in last and answer["outcomes"][-1]["note"] == "Interested in the app"
    with_staff = client.post(f"/api/v1/prompts/{weight['id']}/outcome", headers=auth_header(key),
                             json={"outcome": "not_now", "staff_id": "st-991"}).json
    assert with_staff["last_outcome"]["recorded_by"] == "st-991"


@pytest.mark.parametrize("label, problem", [
    ("x" * 101, "Length must be between 1 and 100."),
    ("Ann\nExample", "Must be one line of text without control characters."),
    ("", "Must not be empty."),
])
def test_a_label_must_be_one_short_line(client: Any, make_key: Any, seeded: Any, label: str,
                                        problem: str) -> None:
    body = make_event(person={"id": "p-1", "age": 50, "display": label})
    answer = client.post("/api/v1/events", json=body, headers=auth_header(make_key()))
    problem_body = assert_problem(answer, 422, "person.display")
    assert problem_body["errors"]["person.display"] == [problem]
    assert label.strip() == "" or label not in answer.get_data(as_text=True)


def test_the_label_reaches_no_log_report_export_backtest_or_other_source(
        client: Any, app: Any, make_key: Any, evaluate_pending: Any,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    runtime = app.extensions["mecc"]
    writer = make_key(organisation="*", callback_hosts=("hooks.example",),
                      scopes=("events:write", "prompts:read", "prompts:write", "reports:read",
                              "rules:read", "rules:write", "admin"))
    # The same person (one NHS number) from two systems, each with its own label.
    emis = post_event(client, writer, _event("emis-web", ANN))
    pharmacy = post_event(client, writer, _event("pharmacy-pos", ANN_ELSEWHERE,
                                                 facts={"phq2": 5}))
    refused = _event("emis-web", ANN + " " + "z" * 100)
    assert client.post("/api/v1/events", json=refused, headers=auth_header(writer)) \
        .status_code == 422
    assert evaluate_pending() == 2
    prompts = client.get(f"/api/v1/prompts?event={emis}", headers=auth_header(writer)).json
    shown = prompts["items"][0]
    assert shown["person"]["display"] == ANN  # the one place it is meant to be
    assert client.post(f"/api/v1/prompts/{shown['id']}/outcome", headers=auth_header(writer),
                       json={"outcome": "referred", "service_id": "example-mcr-stop-smoking",
                             "staff_id": "st-991", "note": "Leaflet"}).status_code == 201

    # Webhooks: each event's callback carries its own label, never the other source's.
    with runtime.db.session() as session:
        for event_id, own, other in ((emis, ANN, ANN_ELSEWHERE),
                                     (pharmacy, ANN_ELSEWHERE, ANN)):
            delivery = session.scalars(select(WebhookDelivery)
                                       .where(WebhookDelivery.event_id == event_id)).one()
            sent = webhooks.build_request(session, delivery).body.decode()
            assert own in sent and other not in sent

    # Everything else an administrator, an analyst or another system can read.
    answers: list[str] = []
    for group_by in outcome_reports.GROUP_BY:
        for accept in ("application/json", "text/csv"):
            answer = client.get(f"/api/v1/reports/outcomes?group_by={group_by}",
                                headers={**auth_header(writer), "Accept": accept})
            assert answer.status_code == 200, answer.get_data(as_text=True)
            answers.append(answer.get_data(as_text=True))
    referrals = client.get("/api/v1/referrals", headers=auth_header(writer)).json["items"]
    assert referrals, "the referral to a named service opened one"
    for path in ("/api/v1/reports/rule-fatigue", "/api/v1/reports/staff-load",
                 "/api/v1/reports/referrals?group_by=service", "/api/v1/referrals",
                 f"/api/v1/referrals/{referrals[0]['id']}/fhir", "/api/v1/audit",
                 "/api/v1/webhook-deliveries"):
        answer = client.get(path, headers=auth_header(writer))
        assert answer.status_code == 200, (path, answer.get_data(as_text=True))
        answers.append(answer.get_data(as_text=True))
    dry = client.post("/api/v1/rules/dry-run", headers=auth_header(writer),
                      json={"rules": ["smoking-very-brief-advice"],
                            "events": [_event("emis-web", ANN)]})
    assert dry.status_code == 200, dry.json
    answers.append(dry.get_data(as_text=True))
    started = client.post("/api/v1/rules/smoking-very-brief-advice/backtest",
                          json={"days": 30}, headers=auth_header(writer)).json
    assert backtest.run_backtest(runtime, started["id"]) == "done"
    done = client.get(started["links"]["self"], headers=auth_header(writer)).json
    assert done["status"] == "done" and done["result"]["totals"]["matches"] >= 1
    answers.append(json.dumps(done))
    for answer in answers:
        assert SECRET_WORD not in answer and "(pharmacy)" not in answer

    # Held in one place only: no other table, and no payload, has a copy.
    assert _cells_holding(runtime.db, SECRET_WORD) == {("events", "person_display")}
    # Never logged, whatever the level.
    out, err = capfd.readouterr()
    assert caplog.records and SECRET_WORD not in caplog.text
    assert SECRET_WORD not in out + err


def _cells_holding(db: Any, needle: str) -> set[tuple[str, str]]:
    """(table, column) of every stored value containing `needle`, JSON included (read in the
    test's own session: on PostgreSQL the test's rows are not committed)."""
    found = set()
    with db.session() as session:
        connection = session.connection()
        for table in inspect(connection).get_table_names():
            rows = session.execute(text(f'SELECT * FROM "{table}"')).mappings()  # noqa: S608
            for row in rows:
                for column, value in row.items():
                    if value is not None and needle in json.dumps(value, default=str):
                        found.add((table, column))
    return found


def test_the_label_is_erased_after_the_retention_window(client: Any, app: Any, make_key: Any,
                                                        evaluate_pending: Any) -> None:
    runtime = app.extensions["mecc"]
    key = make_key()
    occurred = datetime.now(UTC) - timedelta(hours=2)
    recent = post_event(client, key, _event("emis-web", ANN, occurred_at=occurred.isoformat(),
                                            callback_url=None))
    # A contact already past the window arrives without its label.
    old = post_event(client, key, _event(
        "emis-web", "Bea Late", callback_url=None,
        person={"id": "someone-else", "age": 40, "display": "Bea Late"},
        occurred_at=(datetime.now(UTC) - timedelta(hours=30)).isoformat()))
    evaluate_pending()
    assert "display" not in client.get(f"/api/v1/events/{old}",
                                       headers=auth_header(key)).json["person"]

    assert display.erase_expired(runtime) == 0  # 2 h old: within the 24 h window
    assert display.erase_expired(runtime, now=occurred + timedelta(hours=23, minutes=59)) == 0
    assert display.erase_expired(runtime, now=occurred + timedelta(hours=24)) == 1
    assert display.erase_expired(runtime, now=occurred + timedelta(hours=25)) == 0  # once
    detail = client.get(f"/api/v1/events/{recent}", headers=auth_header(key)).json
    assert "display" not in detail["person"]
    assert detail["prompts"] and all(p["person"]["display"] is None for p in detail["prompts"])
    assert all(p["person"]["id"] == "emis-web-person" for p in detail["prompts"])
    assert _cells_holding(runtime.db, SECRET_WORD) == set()
    with runtime.db.session() as session:
        assert session.get_one(Event, recent).payload["person"]["sex"] == "female"
