"""Webhook deliveries against a real HTTP receiver on 127.0.0.1, on SQLite and PostgreSQL.

Events go in over the real app, are evaluated by the real pipeline (in-process here; the last
test runs a real `celery worker`), and the sweep is driven directly with a stand-in clock so
that a 24 h retry schedule runs in seconds. Every delivery that arrives is verified with the
`standardwebhooks` package, as a receiver would.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from mecc.admin import keys
from mecc.delivery import webhooks
from mecc.delivery.webhook_client import Timeouts
from mecc.evaluation import service as evaluation
from mecc.platform.db import utcnow
from mecc.store.models import ApiKey, Prompt, WebhookDelivery, WebhookEndpoint
from tests.support.factories import add_key, auth_header, make_event
from tests.support.stack import WEBHOOK_REDIS_URL, flush_redis_or_skip
from tests.support.workers import running_beat, running_worker, wait_for

LIST = "/api/v1/webhook-deliveries"
CEILING = staticmethod(lambda: 1.0)  # jitter at its ceiling: delays 5, 10, 20, 40 s ...


# ------------------------------------------------------------------------------ the receiver
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP server that answers from a script: a status, (status, headers), or ('sleep', s).

    The last answer repeats once the script runs out.
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: list[Any] = [200]
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers), body))
                    answer = (receiver._script.pop(0) if len(receiver._script) > 1
                              else receiver._script[0])
                headers: dict[str, str] = {}
                if isinstance(answer, tuple) and answer[0] == "sleep":
                    time.sleep(answer[1])
                    answer = 200
                elif isinstance(answer, tuple):
                    answer, headers = answer
                try:
                    self.send_response(answer)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting, as it should

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}{path}"

    def respond(self, *answers: Any) -> None:
        with self._lock:
            self._script = list(answers)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(timeout=5)


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    flush_redis_or_skip(WEBHOOK_REDIS_URL)
    # One shown prompt per contact: the example event then has deferred ones to leave out.
    return {**settings_overrides, "redis_url": WEBHOOK_REDIS_URL, "max_prompts_per_contact": 1}


@dataclass(frozen=True)
class HookKey:
    id: str
    key: str
    secret: str


def create_key(app: Any, *, organisation: str = "Y02345", hosts: tuple[str, ...] = (),
               scopes: tuple[str, ...] = ("events:write", "prompts:read")) -> HookKey:
    created = add_key(app.extensions["mecc"].db, name="hooks", organisation=organisation,
                      scopes=scopes, callback_hosts=hosts)
    return HookKey(created.id, created.key, created.webhook_secret)


@pytest.fixture
def hook_key(seeded: Any, receiver: Receiver) -> HookKey:
    return create_key(seeded, hosts=(receiver.host,))


def post_event(client: Any, key: HookKey, url: str, **overrides: Any) -> str:
    response = client.post("/api/v1/events", json=make_event(callback_url=url, **overrides),
                           headers=auth_header(key.key))
    assert response.status_code == 202, response.get_data(as_text=True)
    return str(response.json["id"])


def evaluate(app: Any, event_id: str) -> None:
    """What the evaluate task does, in-process (the same service function): claim, evaluate,
    queue deliveries, commit. The sweep is then driven by the test, not by a worker."""
    result = evaluation.evaluate_events(app.extensions["mecc"], [event_id])
    assert result.evaluated == [event_id]


def delivery_of(app: Any, event_id: str) -> WebhookDelivery:
    with app.extensions["mecc"].db.session() as session:
        return session.scalars(select(WebhookDelivery)
                               .where(WebhookDelivery.event_id == event_id)).one()


def deliver(app: Any, now: datetime | None = None, **kwargs: Any) -> dict[str, int]:
    kwargs.setdefault("rand", CEILING)
    return webhooks.deliver_due(app.extensions["mecc"], now=now, **kwargs).counts


def verified(received: Received, secret: str) -> dict[str, Any]:
    """The body, after the standardwebhooks package accepted the signature."""
    result: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return result


# ------------------------------------------------------------------------------ success
def test_a_delivery_arrives_signed_with_the_shown_prompts(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver) -> None:
    event_id = post_event(client, hook_key, receiver.url("/mecc/hook?tenant=1"))
    evaluate(seeded, event_id)
    delivery = delivery_of(seeded, event_id)
    assert delivery.status == "pending" and delivery.attempts == 0

    assert deliver(seeded) == {"succeeded": 1}

    [received] = receiver.requests
    body = verified(received, hook_key.secret)
    assert received.path == "/mecc/hook?tenant=1"
    assert received.headers["webhook-id"] == delivery.id
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["User-Agent"].startswith("MECC-Prompts-Webhooks/")
    assert received.headers["Host"] == receiver.host
    assert body["type"] == "prompts.created"
    assert body["data"]["event"]["id"] == event_id
    with seeded.extensions["mecc"].db.session() as session:
        prompts = list(session.scalars(select(Prompt).where(Prompt.event_id == event_id)))
    shown = {p.id for p in prompts if p.status == "new"}
    assert shown, "the example event should produce prompts"
    assert any(p.status == "deferred" for p in prompts), "the example should defer one"
    assert {p["id"] for p in body["data"]["prompts"]} == shown
    assert all(p["event"] == event_id and p["status"] == "new" for p in body["data"]["prompts"])

    done = delivery_of(seeded, event_id)
    assert (done.status, done.attempts, done.last_status_code, done.last_error) == (
        "succeeded", 1, 200, None)
    assert deliver(seeded) == {}  # nothing is due any more
    assert len(receiver.requests) == 1


def test_queueing_twice_keeps_one_delivery(seeded: Any, client: Any, hook_key: HookKey,
                                           receiver: Receiver) -> None:
    """A redelivered evaluation reaches queue_delivery again: still one row per endpoint."""
    event_id = post_event(client, hook_key, receiver.url())
    evaluate(seeded, event_id)
    first = delivery_of(seeded, event_id)
    runtime = seeded.extensions["mecc"]
    with runtime.db.session() as session:
        from mecc.store.models import Event

        event = session.get_one(Event, event_id)
        assert webhooks.queue_delivery(session, event, utcnow()) == first.id
        assert webhooks.queue_delivery(session, event, utcnow()) == first.id
        session.commit()
        assert len(list(session.scalars(select(WebhookDelivery)))) == 1
        assert len(list(session.scalars(select(WebhookEndpoint)))) == 1


# ------------------------------------------------------------------------------ failures
def test_failures_are_retried_with_growing_delays_then_parked(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver) -> None:
    receiver.respond(500)
    event_id = post_event(client, hook_key, receiver.url())
    evaluate(seeded, event_id)
    created = delivery_of(seeded, event_id).created_at
    now = utcnow()
    delays = []
    for attempt in range(1, 6):
        assert deliver(seeded, now) == {"pending": 1}
        row = delivery_of(seeded, event_id)
        assert (row.status, row.attempts, row.last_status_code) == ("pending", attempt, 500)
        assert row.last_error == "HTTP 500"
        delays.append((row.next_attempt_at - now).total_seconds())
        assert deliver(seeded, row.next_attempt_at - timedelta(seconds=1)) == {}  # not yet
        now = row.next_attempt_at
    assert delays == pytest.approx([5, 10, 20, 40, 80], abs=0.01)

    assert deliver(seeded, created + timedelta(hours=24, seconds=1)) == {"failed": 1}
    parked = delivery_of(seeded, event_id)
    assert parked.status == "failed" and parked.attempts == 6
    assert "gave up after 6 attempts" in (parked.last_error or "")
    assert deliver(seeded, created + timedelta(days=3)) == {}  # parked means parked
    assert len(receiver.requests) == 6
    assert {r.headers["webhook-id"] for r in receiver.requests} == {parked.id}
    for received in receiver.requests:
        verified(received, hook_key.secret)  # every attempt is signed afresh


def test_retry_after_is_honoured(seeded: Any, client: Any, hook_key: HookKey,
                                 receiver: Receiver) -> None:
    receiver.respond((503, {"Retry-After": "120"}))
    event_id = post_event(client, hook_key, receiver.url())
    evaluate(seeded, event_id)
    now = utcnow()
    deliver(seeded, now, rand=lambda: 0.0)
    row = delivery_of(seeded, event_id)
    assert row.last_status_code == 503
    assert (row.next_attempt_at - now).total_seconds() == pytest.approx(120, abs=0.01)


def test_a_slow_receiver_times_out_and_is_retried(seeded: Any, client: Any,
                                                  hook_key: HookKey, receiver: Receiver) -> None:
    receiver.respond(("sleep", 2.0))
    event_id = post_event(client, hook_key, receiver.url())
    evaluate(seeded, event_id)
    started = time.monotonic()
    assert deliver(seeded, timeouts=Timeouts(connect=0.5, total=0.5)) == {"pending": 1}
    assert time.monotonic() - started < 1.8
    row = delivery_of(seeded, event_id)
    assert row.last_status_code is None and "timed out" in (row.last_error or "")


def test_a_redirect_is_not_followed_and_counts_as_a_failure(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver) -> None:
    receiver.respond((302, {"Location": receiver.url("/elsewhere")}), 200)
    event_id = post_event(client, hook_key, receiver.url())
    evaluate(seeded, event_id)
    assert deliver(seeded) == {"pending": 1}
    row = delivery_of(seeded, event_id)
    assert row.last_status_code == 302 and "redirects are not followed" in (row.last_error or "")
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_410_disables_the_endpoint_and_retry_enables_it(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver) -> None:
    receiver.respond(410, 200)
    first = post_event(client, hook_key, receiver.url())
    second = post_event(client, hook_key, receiver.url())
    evaluate(seeded, first)
    evaluate(seeded, second)
    now = utcnow()
    counts = deliver(seeded, now)
    assert counts == {"disabled": 1}, counts  # the other was disabled with the endpoint
    assert len(receiver.requests) == 1
    for event_id in (first, second):
        row = delivery_of(seeded, event_id)
        assert row.status == "disabled", event_id
    with seeded.extensions["mecc"].db.session() as session:
        endpoint = session.scalars(select(WebhookEndpoint)).one()
        assert endpoint.disabled_at is not None and "410" in (endpoint.disabled_reason or "")

    third = post_event(client, hook_key, receiver.url())
    evaluate(seeded, third)
    assert delivery_of(seeded, third).status == "disabled"  # queued disabled, never sent
    assert deliver(seeded, now + timedelta(hours=1)) == {}
    assert len(receiver.requests) == 1

    delivery_id = delivery_of(seeded, third).id
    response = client.post(f"{LIST}/{delivery_id}/retry", headers=auth_header(hook_key.key))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.json["status"] == "pending" and response.json["next_attempt_at"]
    assert deliver(seeded) == {"succeeded": 1}
    verified(receiver.requests[-1], hook_key.secret)
    with seeded.extensions["mecc"].db.session() as session:
        assert session.scalars(select(WebhookEndpoint)).one().disabled_at is None
    assert delivery_of(seeded, second).status == "disabled"  # retried one by one


# ------------------------------------------------------------------------------ claims
@pytest.mark.commits  # threads with connections of their own
def test_concurrent_sweeps_send_each_delivery_once(seeded: Any, client: Any,
                                                   hook_key: HookKey, receiver: Receiver) -> None:
    receiver.respond(("sleep", 0.2))
    ids = [post_event(client, hook_key, receiver.url()) for _ in range(5)]
    for event_id in ids:
        evaluate(seeded, event_id)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            results.append(deliver(seeded))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert sum(r.get("succeeded", 0) for r in results) == 5
    sent = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(sent) == 5 and len(set(sent)) == 5, sent
    assert {delivery_of(seeded, e).status for e in ids} == {"succeeded"}


def test_a_sender_that_died_is_overtaken_after_its_lease(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver) -> None:
    event_id = post_event(client, hook_key, receiver.url())
    evaluate(seeded, event_id)
    runtime = seeded.extensions["mecc"]
    now = utcnow()
    with runtime.db.session() as session:  # a sender claims it, then dies before sending
        _, [claimed] = webhooks.claim_due(session, now=now)
        session.commit()
    assert deliver(seeded, now + webhooks.LEASE - timedelta(seconds=1)) == {}  # still leased
    assert receiver.requests == []
    assert deliver(seeded, now + webhooks.LEASE) == {"succeeded": 1}
    row = delivery_of(seeded, event_id)
    assert row.attempts == 2 and receiver.requests[0].headers["webhook-id"] == claimed.id


def test_a_sender_that_died_past_the_window_leaves_the_delivery_parked(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver) -> None:
    event_id = post_event(client, hook_key, receiver.url())
    evaluate(seeded, event_id)
    late = delivery_of(seeded, event_id).created_at + timedelta(hours=25)
    with seeded.extensions["mecc"].db.session() as session:
        webhooks.claim_due(session, now=late)
        session.commit()
    assert deliver(seeded, late + webhooks.LEASE) == {"abandoned": 1}
    row = delivery_of(seeded, event_id)
    assert row.status == "failed" and "sender lost" in (row.last_error or "")
    assert receiver.requests == []


# ------------------------------------------------------------------------------ the policy
def set_hosts(app: Any, key: HookKey, hosts: list[str]) -> None:
    with app.extensions["mecc"].db.session() as session:
        session.get_one(ApiKey, key.id).callback_hosts = hosts
        session.commit()


def test_a_host_taken_off_the_allow_list_is_refused_at_send_time(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver) -> None:
    event_id = post_event(client, hook_key, receiver.url())
    evaluate(seeded, event_id)
    set_hosts(seeded, hook_key, ["gp-system.example"])

    assert deliver(seeded) == {"failed": 1}
    row = delivery_of(seeded, event_id)
    assert "not on the API key's callback allow-list" in (row.last_error or "")
    assert receiver.requests == []

    set_hosts(seeded, hook_key, [receiver.host])  # the administrator puts it back
    response = client.post(f"{LIST}/{row.id}/retry", headers=auth_header(hook_key.key))
    assert response.status_code == 202
    assert deliver(seeded) == {"succeeded": 1}


def test_an_allow_listed_name_resolving_to_loopback_is_refused_until_the_address_is_listed(
        seeded: Any, client: Any, receiver: Receiver) -> None:
    name = f"receiver.test:{receiver.port}"
    key = create_key(seeded, hosts=(name,))
    looked_up: list[str] = []

    def resolve(host: str, port: int, type: int = 0) -> list[Any]:  # getaddrinfo's names
        looked_up.append(host)
        return [(2, 1, 6, "", ("127.0.0.1", port))]

    event_id = post_event(client, key, f"http://{name}/hook")
    evaluate(seeded, event_id)
    assert deliver(seeded, resolver=resolve) == {"failed": 1}
    row = delivery_of(seeded, event_id)
    assert "resolves to 127.0.0.1, not a public address" in (row.last_error or "")
    assert receiver.requests == [] and looked_up == ["receiver.test"]

    set_hosts(seeded, key, [name, "127.0.0.1"])
    assert client.post(f"{LIST}/{row.id}/retry", headers=auth_header(key.key)).status_code == 202
    assert deliver(seeded, resolver=resolve) == {"succeeded": 1}
    [received] = receiver.requests
    assert received.headers["Host"] == name  # the name, while connecting to the address
    verified(received, key.secret)


def test_a_revoked_key_gets_no_more_deliveries(seeded: Any, client: Any, hook_key: HookKey,
                                               receiver: Receiver) -> None:
    event_id = post_event(client, hook_key, receiver.url())
    evaluate(seeded, event_id)
    with seeded.extensions["mecc"].db.session() as session:
        keys.revoke_key(session, hook_key.id)
        session.commit()
    assert deliver(seeded) == {"failed": 1}
    assert "revoked" in (delivery_of(seeded, event_id).last_error or "")
    assert receiver.requests == []


# ------------------------------------------------------------------------------ the API
def test_deliveries_are_listed_per_organisation_with_filters_and_cursors(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver) -> None:
    receiver.respond(200, 500)
    ids = [post_event(client, hook_key, receiver.url()) for _ in range(3)]
    for event_id in ids:
        evaluate(seeded, event_id)
    deliver(seeded, budget=60)
    other = create_key(seeded, organisation="A81001", hosts=(receiver.host,))
    theirs = post_event(client, other, receiver.url(), organisation="A81001")
    evaluate(seeded, theirs)
    admin = create_key(seeded, organisation="*", scopes=("admin",))

    def get(key: HookKey, query: str = "") -> Any:
        response = client.get(f"{LIST}{query}", headers=auth_header(key.key))
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.json

    mine = get(hook_key)
    assert {d["event"] for d in mine["items"]} == set(ids) and mine["next_cursor"] is None
    item = mine["items"][0]
    assert set(item) >= {"id", "event", "url", "status", "attempts", "next_attempt_at",
                         "last_status_code", "last_error", "created_at", "updated_at"}
    assert item["url"] == receiver.url()
    assert sorted(d["status"] for d in mine["items"]) == ["pending", "pending", "succeeded"]
    assert [d["event"] for d in get(hook_key, f"?event={ids[1]}")["items"]] == [ids[1]]
    assert len(get(hook_key, "?status=succeeded")["items"]) == 1
    assert {d["event"] for d in get(other)["items"]} == {theirs}
    assert len(get(admin)["items"]) == 4

    page = get(hook_key, "?limit=2")
    rest = get(hook_key, f"?limit=2&cursor={page['next_cursor']}")
    assert len(page["items"]) == 2 and rest["next_cursor"] is None
    assert {d["id"] for d in page["items"] + rest["items"]} == {d["id"] for d in mine["items"]}

    bad = client.get(f"{LIST}?status=lost", headers=auth_header(hook_key.key))
    assert bad.status_code == 422 and "status" in bad.json["errors"]
    naive = base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", "x"]').decode()
    for cursor in ("not-a-cursor", naive):
        bad = client.get(f"{LIST}?cursor={cursor}", headers=auth_header(hook_key.key))
        assert bad.status_code == 422 and "cursor" in bad.json["errors"], cursor


def test_retry_is_scoped_and_refuses_what_cannot_be_retried(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver) -> None:
    event_id = post_event(client, hook_key, receiver.url())
    evaluate(seeded, event_id)
    deliver(seeded)
    delivery_id = delivery_of(seeded, event_id).id
    other = create_key(seeded, organisation="A81001")
    reader = create_key(seeded, scopes=("prompts:read",))

    def retry(key: HookKey, target: str = delivery_id) -> Any:
        return client.post(f"{LIST}/{target}/retry", headers=auth_header(key.key))

    assert retry(other).status_code == 404  # another organisation's: not revealed
    assert retry(hook_key, "7d1c0b9e-7f0a-4c7e-9d67-0c7d2f0f1a11").status_code == 404
    assert retry(reader).status_code == 403
    assert client.get(LIST, headers=auth_header(reader.key)).status_code == 403
    assert client.get(LIST).status_code == 401
    conflict = retry(hook_key)
    assert conflict.status_code == 409 and "succeeded" in conflict.json["detail"]


# ------------------------------------------------------------------------------ end to end
@pytest.mark.slow
@pytest.mark.commits  # a worker process reads the rows
def test_a_real_worker_evaluates_and_delivers_signed_prompts(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver,
        settings_overrides: dict[str, Any], tmp_path: Path) -> None:
    with running_worker(settings_overrides, tmp_path) as worker:
        event_id = post_event(client, hook_key, receiver.url())
        received = wait_for(lambda: receiver.requests[0] if receiver.requests else None,
                            worker, "the webhook delivery")
        body = verified(received, hook_key.secret)
        assert body["data"]["event"]["id"] == event_id
        assert body["data"]["prompts"] and all(p["status"] == "new"
                                               for p in body["data"]["prompts"])
        wait_for(lambda: True if delivery_of(seeded, event_id).status == "succeeded" else None,
                 worker, "the delivery to be recorded")
        listed = client.get(f"{LIST}?event={event_id}", headers=auth_header(hook_key.key))
        assert [d["status"] for d in listed.json["items"]] == ["succeeded"]
        assert json.loads(received.body) == body


@pytest.mark.slow
@pytest.mark.commits  # a worker process reads the rows
def test_beat_sweeps_a_failed_delivery_until_it_succeeds(
        seeded: Any, client: Any, hook_key: HookKey, receiver: Receiver,
        settings_overrides: dict[str, Any], tmp_path: Path) -> None:
    receiver.respond(500, 200)
    with running_worker(settings_overrides, tmp_path) as worker, \
            running_beat(settings_overrides, tmp_path) as beat:
        event_id = post_event(client, hook_key, receiver.url())
        wait_for(lambda: True if len(receiver.requests) >= 2 else None, worker,
                 "the retry sent by the beat sweep", timeout=45)
        assert beat.alive(), beat.tail()
        row = wait_for(lambda: (lambda d: d if d.status == "succeeded" else None)(
            delivery_of(seeded, event_id)), worker, "the delivery to succeed")
    assert row.attempts == 2 and row.last_status_code == 200
    first, second = receiver.requests[:2]
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == row.id
    assert verified(first, hook_key.secret) == verified(second, hook_key.secret)
