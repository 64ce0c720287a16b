"""POST /api/v1/events/batch: up to 500 events, each answered on its own, in request order."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from mecc.store.models import Event
from tests.support.factories import assert_problem, auth_header, make_event

URL = "/api/v1/events/batch"


def stored(app: Any) -> dict[tuple[str, str], Event]:
    with app.extensions["mecc"].db.session() as session:
        return {(r.source, r.event_id): r for r in session.scalars(select(Event))}


@pytest.fixture
def key(make_key: Any) -> str:
    return make_key()


@pytest.fixture
def send(client: Any, key: str) -> Any:
    def post(body: Any) -> Any:
        return client.post(URL, json=body, headers=auth_header(key))
    return post


def results(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert list(answer) == ["results"]
    return list(answer["results"])


def test_a_mixed_batch_is_answered_item_by_item_in_order(app: Any, client: Any, key: str,
                                                          send: Any) -> None:
    earlier = make_event()
    earlier_conflict = make_event()
    for body in (earlier, earlier_conflict):
        assert client.post("/api/v1/events", json=body,
                           headers=auth_header(key)).status_code == 202
    first = make_event()
    items = [
        first,                                                      # 0 accepted
        make_event(facts={"bmi": 5}),                               # 1 rejected: facts.bmi
        make_event(organisation="A81001"),                          # 2 rejected: 403
        dict(first),                                                # 3 duplicate of 0
        {**first, "facts": {"smoking_status": "never"}},            # 4 rejected: 409 vs 0
        earlier,                                                    # 5 duplicate of earlier
        {**earlier_conflict, "setting": "dental"},                  # 6 rejected: 409 vs earlier
        "not an event",                                             # 7 rejected: body
        make_event(),                                               # 8 accepted
    ]
    answer = results(send({"events": items}))

    assert [r["index"] for r in answer] == list(range(len(items)))
    assert [r["status"] for r in answer] == [
        "accepted", "rejected", "rejected", "duplicate", "rejected", "duplicate", "rejected",
        "rejected", "accepted"]
    rows = stored(app)
    assert answer[0]["id"] == rows[("emis-web", first["event_id"])].id
    assert answer[3]["id"] == answer[0]["id"]
    assert answer[5]["id"] == rows[("emis-web", earlier["event_id"])].id
    assert answer[8]["id"] == rows[("emis-web", items[8]["event_id"])].id
    problems = {r["index"]: r["problem"] for r in answer if r["status"] == "rejected"}
    assert all("id" not in r for r in answer if r["status"] == "rejected")
    assert problems[1]["status"] == 422 and "facts.bmi" in problems[1]["errors"]
    assert problems[2]["status"] == 403 and "A81001" in problems[2]["detail"]
    assert problems[4]["status"] == 409
    assert problems[6]["status"] == 409
    assert problems[7]["status"] == 422 and "body" in problems[7]["errors"]
    for problem in problems.values():
        assert {"type", "title", "status", "detail"} <= problem.keys()
    # Two earlier events and the two accepted now; nothing else.
    assert len(rows) == 4
    assert rows[("emis-web", earlier_conflict["event_id"])].setting == "general_practice"


def test_a_rejected_item_names_its_fields_without_the_batch_prefix(send: Any) -> None:
    bad = make_event(person={"id": "p-1", "age": 200}, conditions=[{"group": "nope"}])
    [result] = results(send({"events": [bad]}))
    assert result["status"] == "rejected"
    assert {"person.age", "conditions.0.group"} <= result["problem"]["errors"].keys()
    assert result["problem"]["type"] == "urn:mecc:problem:validation-error"


def test_accepted_batch_events_are_queued(app: Any, send: Any) -> None:
    items = [make_event() for _ in range(3)]
    answer = results(send({"events": items}))
    assert [r["status"] for r in answer] == ["accepted"] * 3
    rows = stored(app)
    assert {r.status for r in rows.values()} == {"queued"}
    assert {r["id"] for r in answer} == {r.id for r in rows.values()}
    assert all(uuid.UUID(r["id"]) for r in answer)


def test_the_same_batch_again_is_all_duplicates(app: Any, send: Any) -> None:
    items = [make_event() for _ in range(3)]
    first = results(send({"events": items}))
    again = results(send({"events": items}))
    assert [r["status"] for r in again] == ["duplicate"] * 3
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert len(stored(app)) == 3


def test_five_hundred_events_are_accepted(app: Any, send: Any) -> None:
    items = [make_event() for _ in range(500)]
    answer = results(send({"events": items}))
    assert [r["status"] for r in answer] == ["accepted"] * 500
    assert [r["index"] for r in answer] == list(range(500))
    assert len(stored(app)) == 500


def test_five_hundred_and_one_events_are_refused_whole(app: Any, send: Any) -> None:
    problem = assert_problem(send({"events": [make_event() for _ in range(501)]}), 422,
                             "events")
    assert "500" in problem["detail"]
    assert stored(app) == {}


@pytest.mark.parametrize("body", [
    {"events": []},
    {"events": {"0": {}}},
    {"events": "all of them"},
    {"events": None},
], ids=["empty", "object", "string", "null"])
def test_events_must_be_a_non_empty_list(send: Any, body: Any) -> None:
    assert_problem(send(body), 422, "events")


@pytest.mark.parametrize("body", [[make_event()], {}, {"events": [], "extra": 1}, "events"],
                         ids=["list", "no-events", "extra-key", "string"])
def test_body_must_be_an_object_with_only_events(send: Any, body: Any) -> None:
    problem = assert_problem(send(body), 422)
    assert {"body", "events"} & problem["errors"].keys()


def test_batch_body_over_the_size_limit_is_413(app: Any, client: Any, key: str) -> None:
    padding = "x" * 4000
    items = [make_event(staff={"id": "st-1", "team": padding}) for _ in range(300)]
    response = client.post(URL, json={"events": items}, headers=auth_header(key))
    assert_problem(response, 413)
    assert stored(app) == {}


def test_batch_needs_the_events_write_scope(client: Any, make_key: Any) -> None:
    reader = make_key(scopes=("prompts:read",))
    response = client.post(URL, json={"events": [make_event()]}, headers=auth_header(reader))
    assert_problem(response, 403)
    assert_problem(client.post(URL, json={"events": [make_event()]}), 401)


def test_a_key_for_all_organisations_may_send_any(app: Any, client: Any, make_key: Any) -> None:
    everyone = make_key(organisation="*")
    items = [make_event(organisation="A81001"), make_event(organisation="Y02345")]
    response = client.post(URL, json={"events": items}, headers=auth_header(everyone))
    assert [r["status"] for r in results(response)] == ["accepted", "accepted"]
    assert {r.organisation for r in stored(app).values()} == {"A81001", "Y02345"}
