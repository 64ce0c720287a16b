"""The whole pipeline with a real worker: POST over HTTP, a `celery worker` process evaluates,
prompts and suppressions come back over HTTP, and outcomes change what the next contact gets.

The app is the real Flask app (test client, in-process); the worker (and beat, for the relay)
is a subprocess reading the same database (SQLite and PostgreSQL) through a Redis database of
its own. No eager mode. Those tests are marked slow; the last one, on what a soft time limit
does to a batch, runs the pipeline in-process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import auth_header, make_event
from workers import (
    WORKER_REDIS_URL,
    CeleryProcess,
    flush_redis,
    running_beat,
    running_worker,
    wait_for,
)

SMOKING = "smoking-very-brief-advice"


@pytest.fixture
def worker_redis_url() -> str:
    flush_redis(WORKER_REDIS_URL)
    return WORKER_REDIS_URL


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], worker_redis_url: str
                       ) -> dict[str, Any]:
    # The app under test publishes where the worker consumes.
    return {**settings_overrides, "redis_url": worker_redis_url}


@pytest.fixture
def worker(seeded: Any, settings_overrides: dict[str, Any], tmp_path: Path
           ) -> Iterator[CeleryProcess]:
    with running_worker(settings_overrides, tmp_path) as process:
        yield process


def smoker(person_id: str, occurred_at: datetime) -> dict[str, Any]:
    """A current smoker with no other facts, known by a person id only (no NHS number)."""
    return make_event(
        person={"id": person_id, "birth_date": "1971-04-02", "sex": "female",
                "postcode_district": "M14"},
        facts={"smoking_status": "current"}, conditions=[],
        preferences={"opted_out": False, "declined_topics": []},
        occurred_at=occurred_at.isoformat())


def post(client: Any, key: str, body: dict[str, Any], status: int = 202) -> str:
    response = client.post("/api/v1/events", json=body, headers=auth_header(key))
    assert response.status_code == status, response.get_data(as_text=True)
    return str(response.json["id"])


def evaluated(client: Any, key: str, event_id: str, worker: CeleryProcess,
              timeout: float = 30.0) -> dict[str, Any]:
    """GET the event until the worker has evaluated it."""
    def probe() -> dict[str, Any] | None:
        response = client.get(f"/api/v1/events/{event_id}", headers=auth_header(key))
        assert response.status_code == 200, response.get_data(as_text=True)
        detail: dict[str, Any] = response.json
        assert detail["status"] != "failed", detail
        return detail if detail["status"] == "evaluated" else None

    return wait_for(probe, worker, f"event {event_id} evaluated", timeout)


def rule_keys(detail: dict[str, Any]) -> set[str]:
    return {p["rule"]["key"] for p in detail["prompts"]}


def suppressed(detail: dict[str, Any]) -> dict[str, str]:
    return {s["rule"]["key"]: s["code"] for s in detail["suppressed"]}


@pytest.mark.slow
def test_posted_event_becomes_prompts_over_http_exactly_once(
        client: Any, make_key: Any, worker: CeleryProcess, app: Any) -> None:
    key = make_key()
    body = make_event()  # smoker, BMI 28.4 (South Asian), AUDIT-C 6, type 2 diabetes
    event_id = post(client, key, body)

    detail = evaluated(client, key, event_id, worker)
    assert SMOKING in rule_keys(detail)
    # Alcohol is among the person's declined topics: matched, suppressed, and said why.
    assert suppressed(detail).get("alcohol-brief-advice") == "declined_topic"
    listed = client.get(f"/api/v1/prompts?event={event_id}", headers=auth_header(key)).json
    assert sorted(p["id"] for p in listed["items"]) == sorted(p["id"] for p in detail["prompts"])
    smoking = next(p for p in detail["prompts"] if p["rule"]["key"] == SMOKING)
    assert smoking["status"] == "new" and smoking["person_id"] == "p-7f3a1c"

    # The same body again is the same event, and nothing new is queued for it.
    assert post(client, key, body, status=200) == event_id
    # A redelivered task (the broker's at-least-once) changes nothing. The worker takes
    # messages in order, so once a later event is evaluated the redelivery has been handled.
    assert app.extensions["mecc"].publisher.send_evaluate([event_id])
    later = post(client, key, make_event(person={"id": "p-other", "age": 30}))
    evaluated(client, key, later, worker)
    again = client.get(f"/api/v1/events/{event_id}", headers=auth_header(key)).json
    assert again["prompts"] == detail["prompts"]
    assert again["suppressed"] == detail["suppressed"]
    assert "evaluated" in worker.log() and "'skipped': 1" in worker.log()


@pytest.mark.slow
def test_outcomes_change_what_the_next_contact_gets(
        client: Any, make_key: Any, worker: CeleryProcess) -> None:
    key = make_key()
    now = datetime.now(UTC) - timedelta(minutes=1)
    ten_days_ago = now - timedelta(days=10)
    people = {"declines": "p-declines", "talks": "p-talks", "nothing": "p-no-outcome"}
    first = {who: post(client, key, smoker(pid, ten_days_ago)) for who, pid in people.items()}
    for who, event_id in first.items():
        detail = evaluated(client, key, event_id, worker)
        assert rule_keys(detail) == {SMOKING}, (who, detail["prompts"], detail["suppressed"])
        first[who] = detail["prompts"][0]["id"]

    for who, outcome in (("declines", "declined"), ("talks", "conversation_had")):
        response = client.post(f"/api/v1/prompts/{first[who]}/outcome",
                               json={"outcome": outcome, "staff_id": "st-991"},
                               headers=auth_header(key))
        assert response.status_code == 201, response.get_data(as_text=True)

    second = {who: post(client, key, smoker(pid, now)) for who, pid in people.items()}
    got = {who: evaluated(client, key, event_id, worker) for who, event_id in second.items()}
    # 10 days on: inside the 180-day decline window and the 90-day cooldown; no outcome, no
    # suppression (a different day, so not the same-day rule either).
    assert SMOKING not in rule_keys(got["declines"])
    assert suppressed(got["declines"]) == {SMOKING: "declined_recently"}
    assert SMOKING not in rule_keys(got["talks"])
    assert suppressed(got["talks"]) == {SMOKING: "cooldown"}
    assert rule_keys(got["nothing"]) == {SMOKING}
    assert suppressed(got["nothing"]) == {}
    reason = got["declines"]["suppressed"][0]["reason"]
    assert "declined" in reason and "180 days" in reason


@pytest.mark.slow
def test_an_event_accepted_while_the_broker_is_down_is_relayed_when_it_returns(
        client: Any, make_key: Any, worker: CeleryProcess, settings_overrides: dict[str, Any],
        tmp_path: Path) -> None:
    """The database is the record: with no broker the event is still accepted (quickly), and
    beat's relay sends it once it has waited its grace time. On SQLite the relay claims rows by
    conditional update, on PostgreSQL with SKIP LOCKED: both are exercised here."""
    import socket

    from mecc.api import create_app
    from mecc.platform import auth

    with socket.socket() as sock:  # a port nothing listens on: the broker is down
        sock.bind(("127.0.0.1", 0))
        dead_broker = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    cut_off = create_app({**settings_overrides, "broker_url": dead_broker})
    key = make_key()
    began = time.monotonic()
    response = cut_off.test_client().post("/api/v1/events", json=make_event(),
                                          headers=auth_header(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert time.monotonic() - began < 5, "a dead broker must not hang the request"
    event_id = response.json["id"]
    cut_off.extensions["mecc"].db.dispose()
    auth.clear_cache()

    with running_beat(settings_overrides, tmp_path):
        # Relay grace (10 s) + one beat period (5 s), with room for a slow machine.
        detail = evaluated(client, key, event_id, worker, timeout=45)
    assert SMOKING in rule_keys(detail)
    assert "mecc.relay_events" in worker.log()


def test_a_soft_time_limit_abandons_the_batch_instead_of_failing_an_event(
        client: Any, make_key: Any, seeded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery raises SoftTimeLimitExceeded wherever the task happens to be. Caught as an
    evaluation error it would mark that event `failed` for good; instead the batch is given up,
    the claims stay (processing, until their lease ends) and the relay sends them again."""
    from celery.exceptions import SoftTimeLimitExceeded
    from sqlalchemy import select

    from mecc.admin import rule_store
    from mecc.admin import services as service_store
    from mecc.evaluation import pipeline
    from mecc.store.models import Event, Prompt

    key = make_key()
    now = datetime.now(UTC) - timedelta(minutes=1)
    ids = [post(client, key, smoker(f"p-{i}", now)) for i in range(3)]
    real_decide = pipeline.decide
    calls = []

    def decide_until_the_time_limit(*args: Any, **kwargs: Any) -> Any:
        # Fault injection: the limit's signal arrives while the second event is decided.
        calls.append(1)
        if len(calls) == 2:
            raise SoftTimeLimitExceeded()
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(pipeline, "decide", decide_until_the_time_limit)
    runtime = seeded.extensions["mecc"]
    with runtime.db.session() as session:
        token, rows = pipeline.claim(session, ids)
        session.commit()
        with pytest.raises(SoftTimeLimitExceeded):
            pipeline.evaluate_claimed(
                session, token, rows,
                ruleset=rule_store.LiveRuleCache(runtime.catalogue).get(session),
                services=service_store.ServiceCache().get(session),
                catalogue=runtime.catalogue, max_prompts=3,
                abort_on=(SoftTimeLimitExceeded,))
        session.rollback()
        states = {e.status for e in session.scalars(select(Event).where(Event.id.in_(ids)))}
        assert states == {"processing"}
        assert session.scalars(select(Prompt)).all() == []
        # Past the lease, the relay hands them out again.
        later = datetime.now(UTC) + pipeline.evaluation_lease() + timedelta(seconds=1)
        sent, gave_up = pipeline.due_for_relay(session, now=later)
        session.commit()
    assert sorted(sent) == sorted(ids) and gave_up == []
