"""The whole pipeline with a real worker: POST over HTTP, a `celery worker` process evaluates,
prompts and suppressions come back over HTTP, and outcomes change what the next contact gets.

The app is the real Flask app (test client, in-process); the worker (and beat, for the relay)
is a subprocess reading the same database (SQLite and PostgreSQL) through a Redis database of
its own. No eager mode. Those tests are marked slow; the last two, on what a soft time limit
and a transient database error do to a batch, call the evaluation service in-process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.factories import auth_header, make_event
from tests.support.processes import Proc
from tests.support.stack import WORKER_REDIS_URL, flush_redis_or_skip
from tests.support.workers import running_beat, running_worker, wait_for

SMOKING = "smoking-very-brief-advice"


@pytest.fixture
def worker_redis_url() -> str:
    return flush_redis_or_skip(WORKER_REDIS_URL)


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], worker_redis_url: str
                       ) -> dict[str, Any]:
    # The app under test publishes where the worker consumes.
    return {**settings_overrides, "redis_url": worker_redis_url}


@pytest.fixture
def worker(seeded: Any, settings_overrides: dict[str, Any], tmp_path: Path
           ) -> Iterator[Proc]:
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


def evaluated(client: Any, key: str, event_id: str, worker: Proc,
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
@pytest.mark.commits  # a worker process reads the rows
def test_posted_event_becomes_prompts_over_http_exactly_once(
        client: Any, make_key: Any, worker: Proc, app: Any) -> None:
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
    assert "evaluated" in worker.log_text() and "'skipped': 1" in worker.log_text()


@pytest.mark.slow
@pytest.mark.commits  # a worker process reads the rows
def test_outcomes_change_what_the_next_contact_gets(
        client: Any, make_key: Any, worker: Proc) -> None:
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
@pytest.mark.commits  # a worker process reads the rows
def test_an_event_accepted_while_the_broker_is_down_is_relayed_when_it_returns(
        client: Any, make_key: Any, worker: Proc, settings_overrides: dict[str, Any],
        tmp_path: Path) -> None:
    """The database is the record: with no broker the event is still accepted (quickly), and
    beat's relay sends it once it has waited its grace time. On SQLite the relay claims rows by
    conditional update, on PostgreSQL with SKIP LOCKED: both are exercised here."""
    import socket

    from mecc.api import create_app
    from mecc.views import auth

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
    assert "mecc.relay_events" in worker.log_text()


def test_a_soft_time_limit_abandons_the_batch_instead_of_failing_an_event(
        client: Any, make_key: Any, seeded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery raises SoftTimeLimitExceeded wherever the task happens to be. Caught as an
    evaluation error it would mark that event `failed` for good; instead the batch is given up,
    the claims stay (processing, until their lease ends) and the relay sends them again."""
    from celery.exceptions import SoftTimeLimitExceeded
    from sqlalchemy import select

    from mecc.evaluation import pipeline
    from mecc.evaluation import service as evaluation
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
    # What the evaluate task calls, with the abort it passes.
    with pytest.raises(SoftTimeLimitExceeded):
        evaluation.evaluate_events(runtime, ids, abort_on=(SoftTimeLimitExceeded,))
    monkeypatch.setattr(pipeline, "decide", real_decide)
    # The claims are still held: a redelivered task now finds nothing of its own to do.
    assert evaluation.evaluate_events(runtime, ids).counts == {
        "evaluated": 0, "failed": 0, "skipped": 3}
    with runtime.db.session() as session:
        events = list(session.scalars(select(Event).where(Event.id.in_(ids))))
        assert {e.status for e in events} == {"processing"}
        assert {e.attempts for e in events} == {1}  # the abandoned claim counts
        assert session.scalars(select(Prompt)).all() == []
        # Past the lease, the relay hands them out again.
        later = datetime.now(UTC) + runtime.settings.evaluation_lease + timedelta(seconds=1)
        sent, gave_up = pipeline.due_for_relay(session, now=later)
        session.commit()
    assert sorted(sent) == sorted(ids) and gave_up == []


def test_a_transient_database_error_gives_the_claims_back_uncounted(
        client: Any, make_key: Any, seeded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database drops mid-batch: nothing is written, the events are queued again at once
    (not after the lease) without using up an attempt, and the error reaches the caller (the
    task retries it; a CDS call answers 503). Then the same call evaluates them."""
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from mecc.evaluation import pipeline
    from mecc.evaluation import service as evaluation
    from mecc.store.models import Event

    key = make_key()
    now = datetime.now(UTC) - timedelta(minutes=1)
    ids = [post(client, key, smoker(f"t-{i}", now)) for i in range(2)]
    real_history = pipeline.load_history

    def database_gone(*args: Any, **kwargs: Any) -> Any:
        # Fault injection: the connection is lost while the batch's history is read.
        raise OperationalError("SELECT ...", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(pipeline, "load_history", database_gone)
    runtime = seeded.extensions["mecc"]
    with pytest.raises(OperationalError):
        evaluation.evaluate_events(runtime, ids)
    with runtime.db.session() as session:
        events = list(session.scalars(select(Event).where(Event.id.in_(ids))))
        assert {(e.status, e.attempts, e.claim_token) for e in events} == {("queued", 0, None)}
    monkeypatch.setattr(pipeline, "load_history", real_history)
    result = evaluation.evaluate_events(runtime, ids)
    assert sorted(result.evaluated) == sorted(ids) and result.failed == []
    assert {p.rule_key for p in result.prompts} == {SMOKING}
    assert {p.event_id for p in result.prompts} == set(ids)


def test_stale_values_are_ignored_and_prompts_say_what_they_rest_on(
        client: Any, make_key: Any, seeded: Any) -> None:
    """Issue 10 end to end (evaluated in-process): a value too old is not used and is listed on
    the event; a prompt carries the facts and dates it rests on; a person on a diabetes
    medicine, or coded with diabetes in ICD-10-CM, is never offered diabetes prevention."""
    from mecc.evaluation import service as evaluation

    key = make_key()
    now = datetime.now(UTC) - timedelta(minutes=1)
    day = (now - timedelta(days=30)).date().isoformat()
    stale = (now - timedelta(days=991)).date().isoformat()
    person = {"id": "p-dates", "age": 58, "sex": "male"}
    base = {"person": person, "conditions": [], "preferences": {"opted_out": False,
                                                                 "declined_topics": []}}
    dated = post(client, key, make_event(
        **base, occurred_at=now.isoformat(), facts={"hba1c_mmol_mol": 44.0, "phq9": 14},
        fact_dates={"hba1c_mmol_mol": stale, "phq9": day}))
    fresh = post(client, key, make_event(
        **{**base, "person": {**person, "id": "p-fresh"}}, occurred_at=now.isoformat(),
        facts={"hba1c_mmol_mol": 44.0}, fact_dates={"hba1c_mmol_mol": day}))
    on_metformin = post(client, key, make_event(
        **{**base, "person": {**person, "id": "p-metformin"}}, occurred_at=now.isoformat(),
        facts={"hba1c_mmol_mol": 44.0},
        medications=[{"system": "https://dmd.nhs.uk", "code": "325278007"}]))
    coded_cm = post(client, key, make_event(**{
        **base, "person": {**person, "id": "p-e11"}, "occurred_at": now.isoformat(),
        "facts": {"hba1c_mmol_mol": 44.0},
        "conditions": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}))
    ids = [dated, fresh, on_metformin, coded_cm]
    result = evaluation.evaluate_events(seeded.extensions["mecc"], ids)
    assert sorted(result.evaluated) == sorted(ids)

    def detail(event_id: str) -> dict[str, Any]:
        response = client.get(f"/api/v1/events/{event_id}", headers=auth_header(key))
        assert response.status_code == 200, response.get_data(as_text=True)
        return dict(response.json)

    got = detail(dated)
    assert rule_keys(got) == {"mental-wellbeing-talking-therapies"}
    assert got["ignored_facts"] == [{"fact": "hba1c_mmol_mol", "recorded_at": stale,
                                     "reason": "older than 365 days at the contact "
                                               "(991 days)"}]
    assert got["fact_dates"] == {"hba1c_mmol_mol": stale, "phq9": day}
    [prompt] = got["prompts"]
    assert prompt["evidence"] == [{"fact": "age", "value": 58, "recorded_at": None},
                                  {"fact": "phq9", "value": 14, "recorded_at": day}]

    got = detail(fresh)
    assert rule_keys(got) == {"diabetes-prevention-programme"} and got["ignored_facts"] == []
    assert got["prompts"][0]["evidence"][1] == {"fact": "hba1c_mmol_mol", "value": 44.0,
                                                "recorded_at": day}
    on_day = datetime.fromisoformat(day)
    assert f"HbA1c 44 mmol/mol on {on_day.day} {on_day:%B %Y}" in got["prompts"][0]["summary"]
    listed = client.get(f"/api/v1/prompts?event={fresh}", headers=auth_header(key)).json
    assert listed["items"][0]["evidence"] == got["prompts"][0]["evidence"]
    for never in (on_metformin, coded_cm):
        assert rule_keys(detail(never)) == set()
