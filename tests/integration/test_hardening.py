"""Issue 13, the security walk and the fuzzing run: each finding, as the client saw it.

1 another organisation's history, 4 idempotency per organisation, 5 a revoked key's open
stream, 6 no SQL parameters or health data in logs, 7 one bad item never fails a batch,
8 back-tests' own queue and per-key limit, 9 422 (never 500) for what cannot be stored,
12 the CDS Hooks audience, 13 manual webhook re-drives, 15 credentials in a callback URL,
and request bodies read one strict way everywhere. (Templates, finding 2: also
tests/unit/test_templates.py; rate limits, 10 and 11: test_rate_limit.py.)
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select, text

from mecc.store.models import Event, SuppressedMatch, WebhookDelivery, WebhookEndpoint
from tests.support.factories import add_prompt, assert_problem, auth_header, make_event

EVENTS = "/api/v1/events"
NHS_NUMBER = "9434765919"  # make_event's person
OTHER_ORG = "B81001"
REVEALING = ("smoking", "declin", "referred", "followed up", "conversation")


def _record_outcome(client: Any, key: str, event_id: str, outcome: str) -> str:
    prompts = client.get(f"/api/v1/prompts?event={event_id}", headers=auth_header(key)).json
    smoking = next(p for p in prompts["items"] if p["topic"] == "smoking")
    answer = client.post(f"/api/v1/prompts/{smoking['id']}/outcome",
                         json={"outcome": outcome}, headers=auth_header(key))
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return str(smoking["rule"]["key"])


# ------------------------------------------------------------------ 1. another's history
def test_another_organisations_history_never_reaches_its_keys(
        client: Any, make_key: Any, evaluate_pending: Any, app: Any) -> None:
    own = make_key()
    a_event = client.post(EVENTS, json=make_event(), headers=auth_header(own)).json["id"]
    evaluate_pending()
    smoking_rule = _record_outcome(client, own, a_event, "declined")

    # Organisation B knows the NHS number; its dry-run reads only its own history.
    reader = make_key(OTHER_ORG, ("rules:read",))
    theirs = make_event(organisation=OTHER_ORG, source="other-system",
                        person={"id": "p-b", "nhs_number": NHS_NUMBER, "age": 54})
    dry = client.post("/api/v1/rules/dry-run", json={"events": [theirs]},
                      headers=auth_header(reader))
    assert dry.status_code == 200, dry.get_data(as_text=True)
    [result] = dry.json["results"]
    assert smoking_rule in {c["rule"]["key"] for c in result["shown"]}
    for item in result["suppressed"]:
        assert not any(word in item["reason"].lower() for word in REVEALING), item

    # B's real event: the person's decline still counts, but only as a generic reason.
    writer = make_key(OTHER_ORG, ("events:write", "prompts:read"))
    b_event = client.post(EVENTS, json=theirs, headers=auth_header(writer)).json["id"]
    evaluate_pending()
    detail = client.get(f"{EVENTS}/{b_event}", headers=auth_header(writer)).json
    by_rule = {s["rule"]["key"]: s for s in detail["suppressed"]}
    assert by_rule[smoking_rule]["code"] == "history_elsewhere"
    with app.extensions["mecc"].db.session() as session:
        stored = session.scalars(select(SuppressedMatch.reason)
                                 .where(SuppressedMatch.event_id == b_event)).all()
    assert stored
    for reason in stored:
        assert not any(word in reason.lower() for word in REVEALING), reason
        assert "20" not in reason  # no date


# ------------------------------------------------------------------ 2. templates
STALLING = "Ask about smoking.\n{% for i in range(100000) %}{% for j in range(100000) %}x" \
           "{% endfor %}{% endfor %}"


@pytest.mark.parametrize("detail", [STALLING, "Cost: {{ 9 ** 3000000 }}"])
def test_a_template_that_could_stall_a_worker_is_refused_at_once(client: Any, make_key: Any,
                                                                  detail: str) -> None:
    from mecc.views.rules import RULE_EXAMPLE

    author = make_key(scopes=("rules:read", "rules:write"))
    rule = {**RULE_EXAMPLE, "prompt": {**RULE_EXAMPLE["prompt"], "detail": detail}}
    started = time.monotonic()
    saved = client.post("/api/v1/rules", json=rule, headers=auth_header(author))
    dry = client.post("/api/v1/rules/dry-run", json={"rules": [rule], "events": [make_event()]},
                      headers=auth_header(author))
    assert time.monotonic() - started < 2
    message = assert_problem(saved, 422, "prompt.detail")["errors"]["prompt.detail"][0]
    assert "line" in message and "column" in message, message
    assert_problem(dry, 422, "rules.0.prompt.detail")


# ------------------------------------------------------------------ 4. idempotency
def test_one_organisations_event_ids_never_collide_with_anothers(client: Any,
                                                                make_key: Any) -> None:
    mine, theirs = make_key(), make_key(OTHER_ORG)
    body = make_event(event_id="emis-000123")
    squatted = client.post(EVENTS, json={**body, "organisation": OTHER_ORG},
                           headers=auth_header(theirs))
    assert squatted.status_code == 202
    genuine = client.post(EVENTS, json=body, headers=auth_header(mine))
    assert genuine.status_code == 202, genuine.get_data(as_text=True)
    assert genuine.json["id"] != squatted.json["id"]
    again = client.post(EVENTS, json=body, headers=auth_header(mine))
    assert (again.status_code, again.json["id"]) == (200, genuine.json["id"])
    batch = client.post(f"{EVENTS}/batch", headers=auth_header(theirs), json={"events": [
        {**make_event(event_id="emis-000124"), "organisation": OTHER_ORG}]})
    mine_too = client.post(f"{EVENTS}/batch", headers=auth_header(mine),
                           json={"events": [make_event(event_id="emis-000124")]})
    assert [r["status"] for r in batch.json["results"]] == ["accepted"]
    assert [r["status"] for r in mine_too.json["results"]] == ["accepted"]


# ------------------------------------------------------------------ 5. revoked stream
@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], redis_url: str) -> dict[str, Any]:
    return {**settings_overrides, "stream_heartbeat_seconds": 0.2}


@pytest.mark.commits  # the stream reads the key from a thread of its own
def test_a_revoked_keys_open_stream_is_closed_within_a_heartbeat(
        client: Any, make_key: Any, app: Any) -> None:
    from mecc.admin import keys
    from mecc.store.models import ApiKey

    key = make_key()
    response = client.get("/api/v1/stream", headers=auth_header(key), buffered=False)
    assert response.status_code == 200
    chunks: list[bytes] = []
    ended = threading.Event()

    def read() -> None:
        for chunk in response.response:
            chunks.append(chunk)
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.5)
    assert not ended.is_set() and any(b": hb" in c for c in chunks)  # alive, heart beating
    with app.extensions["mecc"].db.session() as session:
        key_id = session.scalar(select(ApiKey.id).order_by(ApiKey.created_at.desc()))
        keys.revoke_key(session, str(key_id), actor="test")
        session.commit()
    try:
        assert ended.wait(5), "the stream went on after its key was revoked"
    finally:
        response.close()


# ------------------------------------------------------------------ 6. logs
@pytest.fixture
def log_lines(app: Any, monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the app's JSON log handler writes."""
    [handler] = logging.getLogger().handlers
    captured = io.StringIO()
    monkeypatch.setattr(handler, "stream", captured)
    return captured


def test_a_database_error_logs_no_parameters_and_no_health_data(
        client: Any, make_key: Any, app: Any, log_lines: io.StringIO) -> None:
    db = app.extensions["mecc"].db
    with db.session() as session:
        prompt = add_prompt(session)
        session.commit()
        prompt_id = prompt.id
        if db.is_sqlite:
            session.execute(text("CREATE TRIGGER refuse_outcomes BEFORE INSERT ON "
                                 "prompt_outcomes BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        else:  # PostgreSQL's own message quotes the row: "Failing row contains (...)"
            session.execute(text("ALTER TABLE prompt_outcomes ADD CONSTRAINT refuse_notes "
                                 "CHECK (note IS NULL)"))
        session.commit()
    note = f"Ann's NHS number is {NHS_NUMBER}; she lives with her daughter"
    answer = client.post(f"/api/v1/prompts/{prompt_id}/outcome", headers=auth_header(make_key()),
                         json={"outcome": "declined", "note": note})
    assert answer.status_code == 500
    logged = log_lines.getvalue()
    assert "database error" in logged
    assert "withheld" in logged
    for secret in (NHS_NUMBER, "daughter", "Failing row", "parameters:"):
        assert secret not in logged, (secret, logged)
    for line in logged.splitlines():
        json.loads(line)  # still one JSON object per line


# ------------------------------------------------------------------ 7 and 9. unstorable input
def test_one_unstorable_item_is_rejected_alone(client: Any, make_key: Any) -> None:
    nul = make_event()
    nul["conditions"][0]["display"] = "Type 2\u0000diabetes"
    surrogate = make_event(staff={"id": "st-1", "team": "blue\ud800"})
    key_nul = make_event(fact_dates={"bmi\u0000": "2026-01-01"})
    huge = make_event(facts={"audit_c": 2**70})
    good = make_event()
    answer = client.post(f"{EVENTS}/batch", headers=auth_header(make_key()),
                         json={"events": [nul, surrogate, good, key_nul, huge]})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    results = answer.json["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected", "accepted", "rejected",
                                              "rejected"]
    assert set(results[0]["problem"]["errors"]) == {"conditions.0.display"}
    assert set(results[1]["problem"]["errors"]) == {"staff.team"}
    assert "fact_dates.bmi\\x00" in results[3]["problem"]["errors"]
    assert set(results[4]["problem"]["errors"]) == {"facts.audit_c"}
    assert_problem(client.post(EVENTS, json=nul, headers=auth_header(make_key())), 422,
                   "conditions.0.display")


def test_numbers_beyond_a_column_and_nul_in_query_or_path_are_422(
        client: Any, make_key: Any, seeded: Any) -> None:
    author = make_key(scopes=("rules:read", "rules:write", "prompts:read"))
    rule = client.get("/api/v1/rules", headers=auth_header(author)).json["items"][0]["key"]
    for path in (f"/api/v1/rules/{rule}/publish", f"/api/v1/rules/{rule}/backtest"):
        assert_problem(client.post(path, json={"version": 9262902720837},
                                   headers=auth_header(author)), 422, "version")
    assert_problem(client.get("/api/v1/prompts?team=blue%00", headers=auth_header(author)),
                   422, "team")
    assert_problem(client.get("/api/v1/audit?cursor=99999999999999999999",
                              headers=auth_header(author)), 422, "cursor")
    assert_problem(client.get("/api/v1/prompts?organisation=Y02345&staff_id=%00",
                              headers=auth_header(author)), 422, "staff_id")
    signing_in = client.post("/sign-in", data={"email": "ann\u0000@example.nhs.uk",
                                               "password": "x"})
    assert_problem(signing_in, 422, "email")


# ------------------------------------------------------------------ strict bodies
@pytest.mark.parametrize(("raw", "content_type", "status"), [
    ('{"version": 1, "version": 2}', "application/json", 400),
    ('{"version": 1}', "text/plain", 415),
    ('{"version": 1.5}', "application/json", 422),
    ('{"version": "1"}', "application/json", 422),
    ('{"version": true}', "application/json", 422),
])
def test_request_bodies_are_read_one_strict_way(client: Any, make_key: Any, seeded: Any,
                                                raw: str, content_type: str,
                                                status: int) -> None:
    author = make_key(scopes=("rules:read", "rules:write"))
    rule = client.get("/api/v1/rules", headers=auth_header(author)).json["items"][0]["key"]
    for path in (f"/api/v1/rules/{rule}/publish", f"/api/v1/rules/{rule}/backtest"):
        answer = client.post(path, data=raw, headers={**auth_header(author),
                                                      "Content-Type": content_type})
        assert_problem(answer, status, *(("version",) if status == 422 else ()))


def test_duplicate_keys_are_refused_by_every_json_endpoint(client: Any, make_key: Any) -> None:
    key = make_key()
    raw = json.dumps(make_event())[:-1] + ', "source": "another"}'
    for path in (EVENTS, "/api/v1/stream-tokens"):
        answer = client.post(path, data=raw, headers={**auth_header(key),
                                                      "Content-Type": "application/json"})
        assert_problem(answer, 400)
    flag = client.post("/api/v1/rules/dry-run", headers=auth_header(make_key(
        scopes=("rules:read",))), json={"events": [make_event()], "use_history": "false"})
    assert_problem(flag, 422, "use_history")


# ------------------------------------------------------------------ 15. callback credentials
def test_a_callback_url_with_credentials_is_refused(client: Any, make_key: Any) -> None:
    key = make_key(callback_hosts=("gp-system.example",))
    body = make_event(callback_url="https://mecc:hunter2@gp-system.example/hook")
    problem = assert_problem(client.post(EVENTS, json=body, headers=auth_header(key)), 422,
                             "callback_url")
    assert "hunter2" not in json.dumps(problem)


# ------------------------------------------------------------------ 8. back-test limit
def test_a_key_may_have_only_a_few_backtests_running(client: Any, make_key: Any,
                                                      seeded: Any) -> None:
    reader = make_key(scopes=("rules:read",))
    rule = client.get("/api/v1/rules", headers=auth_header(reader)).json["items"][0]["key"]
    path = f"/api/v1/rules/{rule}/backtest"
    limit = seeded.extensions["mecc"].settings.backtest_max_active_per_key
    for _ in range(limit):
        assert client.post(path, json={"days": 365}, headers=auth_header(reader)).status_code \
            == 202
    refused = client.post(path, json={"days": 365}, headers=auth_header(reader))
    assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0
    another = make_key(scopes=("rules:read",))
    assert client.post(path, json={"days": 1}, headers=auth_header(another)).status_code == 202


# ------------------------------------------------------------------ 13. manual re-drive
def test_a_delivery_is_re_driven_by_hand_at_most_once_in_a_while(
        client: Any, make_key: Any, app: Any) -> None:
    key = make_key(callback_hosts=("gp-system.example",))
    event_id = client.post(EVENTS, headers=auth_header(key), json=make_event(
        callback_url="https://gp-system.example/hook")).json["id"]
    with app.extensions["mecc"].db.session() as session:
        event = session.get_one(Event, event_id)
        endpoint = WebhookEndpoint(api_key_id=event.api_key_id, url=event.callback_url)
        session.add(endpoint)
        session.flush()
        delivery = WebhookDelivery(event_id=event_id, endpoint_id=endpoint.id,
                                   organisation="Y02345", status="failed", attempts=12)
        session.add(delivery)
        session.commit()
        delivery_id = delivery.id
    retry = f"/api/v1/webhook-deliveries/{delivery_id}/retry"
    assert client.post(retry, headers=auth_header(key)).status_code == 202
    with app.extensions["mecc"].db.session() as session:  # the sender failed it again
        session.get_one(WebhookDelivery, delivery_id).status = "failed"
        session.commit()
    again = client.post(retry, headers=auth_header(key))
    assert_problem(again, 429)
    assert int(again.headers["Retry-After"]) > 0


# ------------------------------------------------------------------ 12. CDS Hooks audience
def test_without_a_public_url_no_cds_jwt_is_trusted(client: Any, seeded: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from tests.integration.test_cds_hooks import VIEW, Client

    runtime = seeded.extensions["mecc"]
    ehr = Client(seeded)
    body = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"patientId": "1288992", "userId": "Practitioner/example"}}
    production = replace(runtime.settings, cds_audience_from_host=False, public_url="")
    monkeypatch.setattr(runtime, "settings", production)
    # Whatever Host the caller sends, no audience can be checked: refused, not trusted.
    answer = client.post(VIEW, json=body, headers={**ehr.headers(VIEW), "Host": "localhost"})
    assert_problem(answer, 503)
    assert "MECC_PUBLIC_URL" in answer.json["detail"]

    monkeypatch.setattr(runtime, "settings", replace(production,
                                                     public_url="https://mecc.example"))
    spoofed = client.post(VIEW, json=body, headers=ehr.headers(VIEW))  # aud from Host
    assert_problem(spoofed, 401)
    called = client.post(VIEW, json=body, headers=ehr.headers(
        VIEW, aud="https://mecc.example" + VIEW))
    assert called.status_code != 401, called.get_data(as_text=True)


def test_cds_services_answer_cors_for_registered_clients_only(client: Any, seeded: Any) -> None:
    from tests.integration.test_cds_hooks import ISS, VIEW, Client

    Client(seeded)
    origin = ISS.rstrip("/")
    preflight = client.options(VIEW, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    listed = client.get("/cds-services", headers={"Origin": origin})
    assert listed.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in listed.headers["Vary"]
    stranger = client.options(VIEW, headers={"Origin": "https://evil.example",
                                             "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
