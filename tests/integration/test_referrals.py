"""Closed-loop referrals: opened by a `referred` outcome naming a service, followed through
their statuses, exposed as FHIR R4 (validated with the fhir.resources R4B models), with the
person's own outcomes; and the referral report, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from mecc.reports.referrals import LAYOUT
from tests.support.disclosure import derivable
from tests.support.factories import assert_problem, auth_header, make_event, post_event

SERVICE = "example-mcr-stop-smoking"
OTHER_SERVICE = "example-mcr-pharmacy-stop-smoking"
REFERRALS = "/api/v1/referrals"
ITEMS = ("better_able_to_manage", "support_around_me", "hope_for_future", "know_what_helps",
         "involved_in_decisions", "able_to_articulate_needs")


def _smoker_prompt(client: Any, key: str, evaluate_pending: Any, person: str = "p-1",
                   **overrides: Any) -> str:
    body = make_event(person={"id": person, "age": 52, "postcode_district": "M14"},
                      facts={"smoking_status": "current"}, conditions=[],
                      preferences={"opted_out": False, "declined_topics": []}, **overrides)
    event = post_event(client, key, body)
    evaluate_pending()
    prompts = client.get(f"/api/v1/prompts?event={event}", headers=auth_header(key)).json
    return str(next(p["id"] for p in prompts["items"] if p["topic"] == "smoking"))


def _refer(client: Any, key: str, prompt: str, service: str | None = SERVICE,
           outcome: str = "referred") -> Any:
    body: dict[str, Any] = {"outcome": outcome, "staff_id": "st-7"}
    if service:
        body["service_id"] = service
    response = client.post(f"/api/v1/prompts/{prompt}/outcome", json=body,
                           headers=auth_header(key))
    assert response.status_code == 201, response.json
    return response


def _referrals(client: Any, key: str, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"{REFERRALS}?{query}", headers=auth_header(key))
    assert response.status_code == 200, response.json
    return list(response.json["items"])


def _status(client: Any, key: str, referral: str, status: str, note: str | None = None) -> Any:
    body = {"status": status, **({"note": note} if note else {})}
    return client.post(f"{REFERRALS}/{referral}/status", json=body, headers=auth_header(key))


def test_a_referral_is_opened_followed_and_closed(client: Any, make_key: Any,
                                                  evaluate_pending: Any) -> None:
    key = make_key()
    prompt = _smoker_prompt(client, key, evaluate_pending)
    _refer(client, key, prompt)
    _refer(client, key, prompt)  # the same referral again opens no second one
    [referral] = _referrals(client, key, f"prompt={prompt}")
    assert referral["status"] == "requested" and referral["attendance"] is None
    assert referral["service"]["id"] == SERVICE and referral["service"]["name"]
    assert (referral["staff_id"], referral["topic"], referral["person_id"]) == (
        "st-7", "smoking", "p-1")
    assert referral["next_statuses"] == ["accepted", "declined", "attended", "did_not_attend",
                                         "closed"]
    rid = referral["id"]
    for status in ("accepted", "did_not_attend", "attended"):
        response = _status(client, key, rid, status, note="Booked for Tuesday")
        assert response.status_code == 200, response.json
    assert response.json["accepted_at"] is not None
    assert response.json["attendance"] == "attended"
    refused = _status(client, key, rid, "declined")
    problem = assert_problem(refused, 409)
    assert "closed" in problem["detail"]
    closed = _status(client, key, rid, "closed").json
    assert closed["status"] == "closed" and closed["closed_at"] and closed["next_statuses"] == []
    assert [h["status"] for h in closed["history"]] == [
        "requested", "accepted", "did_not_attend", "attended", "closed"]
    assert closed["history"][1]["note"] == "Booked for Tuesday"
    assert_problem(_status(client, key, rid, "accepted"), 409)
    assert_problem(_status(client, key, rid, "requested"), 422, "status")
    assert _referrals(client, key, "status=closed")[0]["id"] == rid
    assert _referrals(client, key, "status=requested") == []
    assert _referrals(client, key, f"service={SERVICE}")[0]["id"] == rid
    assert _referrals(client, key, "from=2099-01-01") == []


def test_only_a_referral_to_a_named_service_opens_one(client: Any, make_key: Any,
                                                      evaluate_pending: Any) -> None:
    key = make_key()
    first = _smoker_prompt(client, key, evaluate_pending, person="p-1")
    _refer(client, key, first, service=None)
    second = _smoker_prompt(client, key, evaluate_pending, person="p-2")
    _refer(client, key, second, service=SERVICE, outcome="conversation_had")
    assert _referrals(client, key) == []
    _refer(client, key, second, service=OTHER_SERVICE)
    assert [r["service"]["id"] for r in _referrals(client, key)] == [OTHER_SERVICE]


def test_the_fhir_resources_are_valid_r4(client: Any, make_key: Any,
                                         evaluate_pending: Any) -> None:
    key = make_key()
    prompt = _smoker_prompt(client, key, evaluate_pending)
    _refer(client, key, prompt)
    rid = _referrals(client, key)[0]["id"]
    response = client.get(f"{REFERRALS}/{rid}/fhir", headers=auth_header(key))
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    bundle = response.json
    Bundle.model_validate(bundle)
    request, task = (entry["resource"] for entry in bundle["entry"])
    ServiceRequest.model_validate(request)
    Task.model_validate(task)
    assert (request["status"], request["intent"], task["status"]) == (
        "active", "order", "requested")
    assert task["focus"]["reference"] == bundle["entry"][0]["fullUrl"]
    assert "nhs_number" not in response.get_data(as_text=True)
    assert "9434765919" not in response.get_data(as_text=True)

    for status in ("accepted", "attended", "closed"):
        assert _status(client, key, rid, status).status_code == 200
    client.post(f"{REFERRALS}/{rid}/personal-outcomes", headers=auth_header(key), json={
        "recorded_at": datetime.now(UTC).isoformat(), "scores": {"hope_for_future": 4}})
    bundle = client.get(f"{REFERRALS}/{rid}/fhir", headers=auth_header(key)).json
    Bundle.model_validate(bundle)
    request, task = (entry["resource"] for entry in bundle["entry"])
    assert (request["status"], task["status"]) == ("completed", "completed")
    assert task["businessStatus"]["coding"][0]["code"] == "closed"
    assert [(o["type"]["coding"][0]["code"], o["valueInteger"]) for o in task["output"]] == [
        ("hope_for_future", 4)]
    Task.model_validate(task)


def test_personal_outcomes_are_recorded_and_bad_scores_named(client: Any, make_key: Any,
                                                             evaluate_pending: Any) -> None:
    key = make_key()
    _refer(client, key, _smoker_prompt(client, key, evaluate_pending))
    rid = _referrals(client, key)[0]["id"]
    url = f"{REFERRALS}/{rid}/personal-outcomes"
    when = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    scores = dict(zip(ITEMS, (4, 5, 3, 4, 2, 1), strict=True))
    response = client.post(url, json={"recorded_at": when, "scores": scores},
                           headers=auth_header(key))
    assert response.status_code == 201, response.json
    assert response.json["personal_outcomes"][0]["scores"] == scores
    partial = client.post(url, json={"recorded_at": when, "scores": {"hope_for_future": 5}},
                          headers=auth_header(key))
    assert partial.json["personal_outcomes"][1]["scores"] == {"hope_for_future": 5}

    for bad in (0, 6, "4", 4.5, True, None):
        response = client.post(url, json={"recorded_at": when, "scores": {
            "better_able_to_manage": 4, "hope_for_future": bad}}, headers=auth_header(key))
        problem = assert_problem(response, 422, "scores.hope_for_future")
        assert "scores.better_able_to_manage" not in problem["errors"]
    assert_problem(client.post(url, json={"recorded_at": when, "scores": {"mood": 3}},
                               headers=auth_header(key)), 422, "scores.mood")
    assert_problem(client.post(url, json={"recorded_at": when, "scores": {}},
                               headers=auth_header(key)), 422, "scores")
    assert_problem(client.post(url, json={"scores": {"hope_for_future": 3}},
                               headers=auth_header(key)), 422, "recorded_at")
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert_problem(client.post(url, json={"recorded_at": future, "scores": {
        "hope_for_future": 3}}, headers=auth_header(key)), 422, "recorded_at")
    assert_problem(client.post(url, json={"recorded_at": "2026-11-20T10:00:00", "scores": {
        "hope_for_future": 3}}, headers=auth_header(key)), 422, "recorded_at")


def test_another_organisations_referral_is_not_found(client: Any, make_key: Any,
                                                     evaluate_pending: Any) -> None:
    ours = make_key()
    _refer(client, ours, _smoker_prompt(client, ours, evaluate_pending))
    rid = _referrals(client, ours)[0]["id"]
    theirs = make_key(organisation="A81001")
    assert _referrals(client, theirs) == []
    for method, path, body in (
            ("get", f"{REFERRALS}/{rid}", None), ("get", f"{REFERRALS}/{rid}/fhir", None),
            ("post", f"{REFERRALS}/{rid}/status", {"status": "accepted"}),
            ("post", f"{REFERRALS}/{rid}/personal-outcomes", {
                "recorded_at": datetime.now(UTC).isoformat(), "scores": {"hope_for_future": 3}})):
        response = getattr(client, method)(path, json=body, headers=auth_header(theirs))
        assert_problem(response, 404)
    assert client.get(f"{REFERRALS}?organisation=Y02345",
                      headers=auth_header(theirs)).status_code == 404
    reader = make_key(scopes=("prompts:read",))
    assert client.get(f"{REFERRALS}/{rid}", headers=auth_header(reader)).status_code == 200
    assert_problem(_status(client, reader, rid, "accepted"), 403)
    assert_problem(client.get(REFERRALS, headers=auth_header(make_key(
        scopes=("reports:read",)))), 403)
    assert client.get(REFERRALS).status_code == 401
    everyone = make_key(organisation="*", scopes=("prompts:read",))
    assert [r["id"] for r in _referrals(client, everyone)] == [rid]


def _referred_people(client: Any, key: str, evaluate_pending: Any, count: int,
                     service: str, outcome_scores: list[int | None]) -> list[str]:
    ids = []
    for n in range(count):
        prompt = _smoker_prompt(client, key, evaluate_pending, person=f"{service}-{n}")
        _refer(client, key, prompt, service=service)
        [referral] = _referrals(client, key, f"prompt={prompt}")
        ids.append(referral["id"])
        score = outcome_scores[n % len(outcome_scores)]
        if score is not None:
            client.post(f"{REFERRALS}/{referral['id']}/personal-outcomes", json={
                "recorded_at": datetime.now(UTC).isoformat(),
                "scores": {"better_able_to_manage": score}}, headers=auth_header(key))
    return ids


@pytest.mark.parametrize("min_cell", [0, 5])
def test_the_referral_report(app: Any, client: Any, make_key: Any, evaluate_pending: Any,
                             min_cell: int) -> None:
    from dataclasses import replace

    runtime = app.extensions["mecc"]
    runtime.settings = replace(runtime.settings, report_min_cell=min_cell)
    key = make_key()
    big = _referred_people(client, key, evaluate_pending, 8, SERVICE, [4, 5, 3, 4])
    small = _referred_people(client, key, evaluate_pending, 3, OTHER_SERVICE, [2])
    for rid in big[:6]:
        assert _status(client, key, rid, "accepted").status_code == 200
    for rid in big[:4]:
        assert _status(client, key, rid, "attended").status_code == 200
    assert _status(client, key, big[4], "did_not_attend").status_code == 200
    assert _status(client, key, small[0], "declined").status_code == 200
    reader = make_key(scopes=("reports:read",))
    report = client.get("/api/v1/reports/referrals?group_by=service",
                        headers=auth_header(reader)).json
    rows = {r["key"]: r for r in report["items"]}
    if min_cell == 0:
        mine = rows[SERVICE]
        assert (mine["referrals"], mine["accepted"], mine["attended"],
                mine["did_not_attend"]) == (8, 6, 4, 1)
        assert mine["status"] == {"requested": 2, "accepted": 1, "declined": 0,
                                  "attended": 4, "did_not_attend": 1, "closed": 0}
        assert mine["rates"] == {"acceptance": 0.75, "attendance": 0.8}
        manage = mine["personal_outcomes"]["better_able_to_manage"]
        assert manage == {"responses": 8, "mean": 4.0,
                          "distribution": {"1": 0, "2": 0, "3": 2, "4": 4, "5": 2}}
        assert rows[OTHER_SERVICE]["status"]["declined"] == 1
        assert report["totals"]["referrals"] == 11
        assert mine["label"] != SERVICE  # the service's name
    else:
        assert report["suppression"]["applied"] and report["suppression"]["min_cell"] == 5
        other = rows[OTHER_SERVICE]
        assert other["referrals"] is None and other["suppressed"] is True
        outcome = other["personal_outcomes"]["better_able_to_manage"]
        assert outcome["mean"] is None and set(outcome["distribution"].values()) == {None}
        assert rows[SERVICE]["rates"]["acceptance"] is None  # its 8 would give 3 away
        hidden = [{c for c in LAYOUT.columns if _cell(r, c) is None} for r in report["items"]]
        totals = {c for c in LAYOUT.columns if _cell(report["totals"], c) is None}
        assert derivable(hidden, totals, LAYOUT) == []
    text = client.get("/api/v1/reports/referrals?group_by=service", headers={
        **auth_header(reader), "Accept": "text/csv"}).get_data(as_text=True)
    lines = list(csv.DictReader(io.StringIO(text)))
    for line, row in zip(lines, [*report["items"], report["totals"]], strict=True):
        for column in LAYOUT.columns:
            value = _cell(row, column)
            name = _csv_name(column)
            if name is None:
                continue
            assert line[name] == (f"<{min_cell}" if value is None else str(value)), name
        manage = row["personal_outcomes"]["better_able_to_manage"]["mean"]
        assert line["better_able_to_manage_mean"] == ("" if manage is None else str(manage))


def _cell(row: dict[str, Any], column: str) -> Any:
    """A report row's value for a LAYOUT column (sums: as given away by mean x responses)."""
    if column.startswith("status:"):
        return row["status"][column[7:]]
    if ":" not in column:
        return row[column]
    item, part = column.split(":")
    outcome = row["personal_outcomes"][item]
    if part == "responses":
        return outcome["responses"]
    if part == "sum":
        mean, responses = outcome["mean"], outcome["responses"]
        if responses == 0:
            return 0
        return None if mean is None or responses is None else round(mean * responses)
    return outcome["distribution"][part]


def _csv_name(column: str) -> str | None:
    if column.startswith("status:"):
        return "status_" + column[7:]
    if ":" not in column:
        return column
    item, part = column.split(":")
    return None if part == "sum" else f"{item}_{part}"
