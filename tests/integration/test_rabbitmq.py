"""RabbitMQ as the broker (CONTRACT.md, "Broker"), against the machine's real RabbitMQ on a
virtual host of the test's own, with a real `celery worker` process.

- an event POSTed to the app goes through quorum queues to the worker and is evaluated once;
- a message redelivered past its delivery limit is dead-lettered, and the relay turns it into
  `failed` events with the reason: nothing is dropped unseen;
- an event already evaluated stays evaluated when a stale copy of its message dies.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mecc.evaluation import service
from mecc.platform.queues import DEAD_LETTER
from mecc.store.models import Event
from tests.support import rabbitmq
from tests.support.factories import auth_header, make_event
from tests.support.stack import REQUIRE_SERVICES
from tests.support.workers import running_worker, wait_for

LIMIT = 5


@pytest.fixture
def broker_url() -> Iterator[str]:
    why = rabbitmq.reachable()
    if why:
        if REQUIRE_SERVICES:
            pytest.fail(why)
        pytest.skip(why)
    with rabbitmq.virtual_host("mecc-test-h") as url:
        yield url


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], broker_url: str) -> dict[str, Any]:
    return {**settings_overrides, "broker_url": broker_url, "broker_delivery_limit": LIMIT}


def post(client: Any, key: str) -> str:
    response = client.post("/api/v1/events", json=make_event(), headers=auth_header(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    return str(response.json["id"])


def status(app: Any, event_id: str) -> tuple[str, str | None]:
    with app.extensions["mecc"].db.session() as session:
        row = session.get(Event, event_id)
        return row.status, row.status_reason


def kill_deliveries(app: Any, times: int) -> int:
    """Take the waiting evaluation message and give it back unacknowledged `times` times, as
    a worker that dies on it would; the number of deliveries seen."""
    celery = app.extensions["celery"]
    queue = next(q for q in celery.conf.task_queues if q.name == "celery")
    seen = 0
    with celery.connection_for_write() as connection:
        for _ in range(times):
            with connection.channel() as channel:
                message = queue(channel).get(no_ack=False)
                if message is None:
                    break
                seen += 1
                message.reject(requeue=True)
    return seen


@pytest.mark.slow
@pytest.mark.commits  # a worker process reads the rows
def test_an_event_goes_through_quorum_queues_to_a_real_worker_once(
        client: Any, make_key: Any, seeded: Any, app: Any, broker_url: str,
        settings_overrides: dict[str, Any], tmp_path: Path) -> None:
    key = make_key()
    event_id = post(client, key)  # published (with a confirm) before any worker exists
    types = rabbitmq.queue_types(broker_url)
    assert types["celery"] == "quorum" and types[DEAD_LETTER] == "quorum", types
    with running_worker(settings_overrides, tmp_path) as worker:
        wait_for(lambda: status(app, event_id)[0] == "evaluated" or None, worker,
                 f"event {event_id} evaluated", timeout=45)
        assert rabbitmq.queue_types(broker_url)["backtests"] == "quorum"
    detail = client.get(f"/api/v1/events/{event_id}", headers=auth_header(key)).json
    assert detail["status"] == "evaluated" and detail["prompts"], detail
    assert "mecc.evaluate_events" in worker.log_text()


@pytest.mark.slow
@pytest.mark.commits
def test_a_message_past_its_delivery_limit_becomes_failed_events_with_the_reason(
        client: Any, make_key: Any, seeded: Any, app: Any, broker_url: str) -> None:
    key = make_key()
    event_id = post(client, key)
    assert status(app, event_id)[0] == "queued"
    # The limit allows LIMIT redeliveries; the next return dead-letters the message.
    assert kill_deliveries(app, LIMIT + 3) == LIMIT + 1
    with app.app_context():
        summary = service.relay(app.extensions["mecc"])
    assert summary["dead_lettered"] == 1, summary
    state, reason = status(app, event_id)
    assert state == "failed", (state, reason)
    assert reason is not None and "dead-lettered" in reason and "delivery_limit" in reason
    # Taken once: the dead-letter queue is empty now, and a second relay finds nothing.
    with app.app_context():
        assert service.relay(app.extensions["mecc"])["dead_lettered"] == 0


@pytest.mark.slow
@pytest.mark.commits
def test_a_dead_letter_for_an_event_already_evaluated_changes_nothing(
        client: Any, make_key: Any, seeded: Any, app: Any, broker_url: str,
        evaluate_pending: Any) -> None:
    key = make_key()
    event_id = post(client, key)
    assert evaluate_pending() >= 1  # evaluated in-process, as another delivery would
    assert kill_deliveries(app, LIMIT + 3) == LIMIT + 1
    with app.app_context():
        assert service.relay(app.extensions["mecc"])["dead_lettered"] == 1
    assert status(app, event_id) == ("evaluated", None)
