"""Prompts over HTTP: filters, cursors, outcomes and what they change, tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.factories import auth_header, make_event, post_event


def _post(client: Any, key: str, **overrides: Any) -> str:
    return post_event(client, key, make_event(**overrides))


def _smoker(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "facts": {"smoking_status": "current"},
        "conditions": [],
        "preferences": {"opted_out": False, "declined_topics": []},
    }
    base.update(overrides)
    return base


def test_event_becomes_prompts_listed_and_filtered(client: Any, make_key: Any,
                                                    evaluate_pending: Any) -> None:
    key = make_key()
    event_id = _post(client, key, **_smoker(facts={"smoking_status": "current", "bmi": 31.0}))
    assert evaluate_pending() == 1

    detail = client.get(f"/api/v1/events/{event_id}", headers=auth_header(key)).json
    assert detail["status"] == "evaluated"
    keys = {p["rule"]["key"] for p in detail["prompts"]}
    assert keys == {"smoking-very-brief-advice", "weight-management-referral"}

    listed = client.get(f"/api/v1/prompts?event={event_id}", headers=auth_header(key)).json
    assert {p["rule"]["key"] for p in listed["items"]} == keys
    assert listed["next_cursor"] is None
    smoking = client.get("/api/v1/prompts?topic=smoking&team=blue&staff_id=st-991",
                         headers=auth_header(key)).json["items"]
    assert [p["topic"] for p in smoking] == ["smoking"]
    assert smoking[0]["suggestions"], "a stop smoking service is suggested"
    assert smoking[0]["sources"][0]["url"].startswith("https://")
    assert client.get("/api/v1/prompts?topic=alcohol",
                      headers=auth_header(key)).json["items"] == []


def test_cursor_pagination_walks_every_prompt_once(client: Any, make_key: Any,
                                                   evaluate_pending: Any) -> None:
    key = make_key()
    for i in range(7):
        _post(client, key, **_smoker(person={"id": f"p-{i}", "age": 40}))
    evaluate_pending()
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        url = "/api/v1/prompts?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=auth_header(key)).json
        seen.extend(p["id"] for p in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and len(set(seen)) == 7


def test_bad_query_parameters_are_named(client: Any, make_key: Any) -> None:
    key = make_key()
    for query, field in (("limit=501", "limit"), ("limit=0", "limit"), ("status=done", "status"),
                         ("cursor=%%%", "cursor"), ("since=2026-01-01T00:00:00", "since"),
                         ("event=not-a-uuid", "event")):
        response = client.get(f"/api/v1/prompts?{query}", headers=auth_header(key))
        assert response.status_code in (400, 422), query
        assert response.content_type == "application/problem+json"
        assert field in response.json["errors"], (query, response.json)


def test_outcome_history_and_status(client: Any, make_key: Any, evaluate_pending: Any) -> None:
    key = make_key()
    event_id = _post(client, key, **_smoker())
    evaluate_pending()
    prompt = client.get(f"/api/v1/prompts?event={event_id}", headers=auth_header(key)).json[
        "items"][0]
    url = f"/api/v1/prompts/{prompt['id']}/outcome"
    first = client.post(url, json={"outcome": "not_now", "staff_id": "st-991"},
                        headers=auth_header(key))
    assert first.status_code == 201, first.json
    second = client.post(url, json={"outcome": "referred", "staff_id": "st-991",
                                    "note": "Booked with the stop smoking service"},
                         headers=auth_header(key))
    assert second.json["status"] == "referred"
    assert [o["outcome"] for o in second.json["outcomes"]] == ["not_now", "referred"]
    got = client.get(f"/api/v1/prompts/{prompt['id']}", headers=auth_header(key)).json
    assert got["status"] == "referred" and len(got["outcomes"]) == 2

    bad = client.post(url, json={"outcome": "done"}, headers=auth_header(key))
    assert bad.status_code == 422 and "outcome" in bad.json["errors"]
    unknown_service = client.post(url, json={"outcome": "referred", "service_id": "nope"},
                                  headers=auth_header(key))
    assert unknown_service.status_code == 422 and "service_id" in unknown_service.json["errors"]


def test_declined_outcome_suppresses_the_topic_at_the_next_contact(
        client: Any, make_key: Any, evaluate_pending: Any) -> None:
    key = make_key()
    start = datetime.now(UTC) - timedelta(days=30)
    first = _post(client, key, **_smoker(occurred_at=start.isoformat()))
    evaluate_pending()
    prompt = client.get(f"/api/v1/prompts?event={first}", headers=auth_header(key)).json[
        "items"][0]
    client.post(f"/api/v1/prompts/{prompt['id']}/outcome", json={"outcome": "declined"},
                headers=auth_header(key))

    second = _post(client, key, **_smoker(occurred_at=(start + timedelta(days=10)).isoformat()))
    evaluate_pending()
    detail = client.get(f"/api/v1/events/{second}", headers=auth_header(key)).json
    assert detail["prompts"] == []
    assert [(s["rule"]["key"], s["code"]) for s in detail["suppressed"]] == [
        ("smoking-very-brief-advice", "declined_recently")]


def test_conversation_had_starts_the_cooldown_across_sources_by_nhs_number(
        client: Any, make_key: Any, evaluate_pending: Any) -> None:
    key = make_key()
    start = datetime.now(UTC) - timedelta(days=60)
    first = _post(client, key, **_smoker(occurred_at=start.isoformat()))
    evaluate_pending()
    prompt = client.get(f"/api/v1/prompts?event={first}", headers=auth_header(key)).json[
        "items"][0]
    client.post(f"/api/v1/prompts/{prompt['id']}/outcome",
                json={"outcome": "conversation_had"}, headers=auth_header(key))
    # A pharmacy system, its own person id, the same NHS number: the same person's history.
    second = _post(client, key, **_smoker(
        source="pharmacy-pmr", setting="community_pharmacy",
        occurred_at=(start + timedelta(days=20)).isoformat(),
        person={"id": "other-system-id", "nhs_number": "943 476 5919", "age": 54}))
    evaluate_pending()
    detail = client.get(f"/api/v1/events/{second}", headers=auth_header(key)).json
    assert [s["code"] for s in detail["suppressed"]] == ["cooldown"]


def test_another_organisations_prompts_are_invisible(client: Any, make_key: Any,
                                                     evaluate_pending: Any) -> None:
    key_a = make_key("Y02345")
    key_b = make_key("A81001")
    event_id = _post(client, key_a, **_smoker())
    evaluate_pending()
    prompt_id = client.get(f"/api/v1/prompts?event={event_id}",
                           headers=auth_header(key_a)).json["items"][0]["id"]
    assert client.get("/api/v1/prompts", headers=auth_header(key_b)).json["items"] == []
    assert client.get(f"/api/v1/prompts/{prompt_id}", headers=auth_header(key_b)
                      ).status_code == 404
    assert client.get("/api/v1/prompts?organisation=Y02345", headers=auth_header(key_b)
                      ).status_code == 404
    assert client.post(f"/api/v1/prompts/{prompt_id}/outcome", json={"outcome": "declined"},
                       headers=auth_header(key_b)).status_code == 404
    assert client.get(f"/api/v1/events/{event_id}", headers=auth_header(key_b)
                      ).status_code == 404


def test_deferred_prompts_are_stored_past_the_cap(client: Any, make_key: Any,
                                                  evaluate_pending: Any) -> None:
    key = make_key()
    event_id = _post(client, key, **_smoker(facts={
        "smoking_status": "current", "bmi": 32.0, "phq2": 4, "audit": 22, "is_carer": True}))
    evaluate_pending()
    prompts = client.get(f"/api/v1/events/{event_id}", headers=auth_header(key)).json["prompts"]
    shown = [p["rule"]["key"] for p in prompts if p["status"] == "new"]
    deferred = [p["rule"]["key"] for p in prompts if p["status"] == "deferred"]
    assert shown == ["alcohol-specialist-referral", "smoking-very-brief-advice",
                     "mental-wellbeing-talking-therapies"]
    assert sorted(deferred) == ["carers-support", "weight-management-referral"]


def test_a_forged_cursor_without_a_zone_is_refused(client: Any, make_key: Any) -> None:
    import base64
    import json

    forged = base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00", "x"]).encode()
                                      ).decode().rstrip("=")
    response = client.get(f"/api/v1/prompts?cursor={forged}", headers=auth_header(make_key()))
    assert response.status_code == 422 and "cursor" in response.json["errors"]


def test_a_released_claim_is_not_counted_as_an_attempt(app: Any, client: Any,
                                                       make_key: Any) -> None:
    from mecc.evaluation import pipeline
    from mecc.store.models import Event

    event_id = _post(client, make_key(), **_smoker())
    db = app.extensions["mecc"].db
    with db.session() as session:
        token, rows = pipeline.claim(session, [event_id])
        session.commit()
        assert [r.attempts for r in rows] == [1]
        assert pipeline.release(session, token) == 1
        session.commit()
        session.expire_all()  # the claim's rows are still in this session's identity map
        event = session.get(Event, event_id)
        assert (event.status, event.attempts, event.claim_token) == ("queued", 0, None)
