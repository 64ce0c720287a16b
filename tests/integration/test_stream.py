"""Live push over real processes: two gunicorn API processes, a Celery worker, Redis, and the
database (SQLite and PostgreSQL). A prompt made by the worker reaches screens on both API
processes; a screen that reconnects with Last-Event-ID gets exactly what it missed."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import requests

from mecc.delivery import push, stream, tokens
from mecc.intake.read import prompt_dict
from mecc.platform.db import Database
from mecc.store.models import Prompt
from tests.support.factories import PROBLEM_JSON, add_prompt, add_push_message, make_event
from tests.support.processes import MECC, Proc, start_api, start_worker
from tests.support.sse import SSEClient
from tests.support.stack import (
    SECRET_KEY,
    STREAM_REDIS_URL,
    create_key,
    flush_redis_or_skip,
    new_database,
    seed,
    service_env,
    unavailable,
)

pytestmark = pytest.mark.slow
HEARTBEAT = 0.5


@dataclass
class Stack:
    env: dict[str, str]
    db: Database
    a: str  # base URL of API process A
    b: str  # base URL of API process B
    org: str
    other_org: str
    keys: dict[str, str]
    key_ids: dict[str, str]
    redis: redis.Redis

    def bearer(self, name: str = "rw") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    def token(self, team: str | None = None, staff_id: str | None = None, *,
              key: str = "rw", base: str | None = None, **narrow: str) -> str:
        body: dict[str, Any] = {"organisation": self.org, **narrow}
        if team:
            body["team"] = team
        if staff_id:
            body["staff_id"] = staff_id
        r = requests.post(f"{base or self.a}/api/v1/stream-tokens", json=body,
                          headers=self.bearer(key), timeout=10)
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def publish(self, team: str, *, organisation: str | None = None, staff_id: str = "st-1",
                kind: str = "prompt", prompt_id: str | None = None,
                person_id: str = "p-1") -> tuple[int, str]:
        """Store a prompt (or an update) with its push message, commit, then announce it, as
        the worker and the outcome service do. Returns (message id, prompt id)."""
        organisation = organisation or self.org
        with self.db.session() as session:
            if prompt_id is None:
                prompt = add_prompt(session, organisation=organisation, team=team,
                                    staff_id=staff_id, source="stream-test",
                                    person_id=person_id)
            else:
                prompt = session.get(Prompt, prompt_id)
                prompt.status = "not_now"
            message = add_push_message(session, prompt, kind)
            session.commit()
            wire = json.dumps(push.message_dict(message, prompt_dict(prompt)))
        self.redis.publish(push.channel_for(STREAM_REDIS_URL), wire)
        return message.id, prompt.id


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql",
                                                                 marks=pytest.mark.postgres)])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    flush_redis_or_skip(STREAM_REDIS_URL)
    directory = tmp_path_factory.mktemp(f"stream-{request.param}")
    try:
        database = new_database(request.param, directory)
    except Exception as exc:  # noqa: BLE001 - PostgreSQL missing: skip or fail, said why
        unavailable(f"the {request.param} database", exc)
    env = service_env(database.url, STREAM_REDIS_URL, directory, MECC_LOG_LEVEL="WARNING",
                      MECC_STREAM_HEARTBEAT_SECONDS=str(HEARTBEAT))
    seed(env)
    org, other = f"S{uuid.uuid4().hex[:6].upper()}", f"B{uuid.uuid4().hex[:6].upper()}"
    made = {
        "rw": create_key(env, org, ("events:write", "prompts:read", "prompts:write")),
        "ro": create_key(env, org, ("prompts:read",)),
        "events": create_key(env, org, ("events:write",)),
        "star": create_key(env, "*", ("prompts:read",)),
        "revocable": create_key(env, org, ("prompts:read",)),
    }
    procs: list[Proc] = []
    db = Database(database.url)
    client = redis.Redis.from_url(STREAM_REDIS_URL)
    try:
        procs.append(start_api(env, directory, name="api-a"))
        procs.append(start_api(env, directory, name="api-b"))
        procs.append(start_worker(env, directory))
        yield Stack(env=env, db=db, a=procs[0].base, b=procs[1].base, org=org,
                    other_org=other, keys={k: v.key for k, v in made.items()},
                    key_ids={k: v.id for k, v in made.items()}, redis=client)
    finally:
        for proc in procs:
            proc.stop()
        client.close()
        db.dispose()
        database.drop()


def team() -> str:
    return f"team-{uuid.uuid4().hex[:8]}"


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


# ------------------------------------------------------------------------------ delivery
def test_worker_prompts_reach_screens_on_both_api_processes(stack: Stack) -> None:
    blue = team()
    by_token = SSEClient(f"{stack.a}/api/v1/stream", params={"token": stack.token(blue)})
    by_key = SSEClient(f"{stack.b}/api/v1/stream", headers=stack.bearer("ro"),
                       params={"organisation": stack.org, "team": blue})
    elsewhere = SSEClient(f"{stack.b}/api/v1/stream", headers=stack.bearer("ro"),
                          params={"organisation": stack.org, "team": team()})
    try:
        assert by_token.status_code == by_key.status_code == 200
        assert by_token.response.headers["Content-Type"].startswith("text/event-stream")
        body = make_event(organisation=stack.org,
                          staff={"id": "st-991", "role": "practice_nurse", "team": blue})
        r = requests.post(f"{stack.a}/api/v1/events", json=body, headers=stack.bearer(),
                          timeout=10)
        assert r.status_code == 202, r.text
        event_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while True:
            detail = requests.get(f"{stack.b}/api/v1/events/{event_id}",
                                  headers=stack.bearer(), timeout=10).json()
            if detail["status"] == "evaluated" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert detail["status"] == "evaluated", detail
        shown = {p["id"]: p for p in detail["prompts"] if p["status"] == "new"}
        assert shown, "the contract's example event should prompt"

        for client in (by_token, by_key):
            got = client.events(len(shown))
            assert [m.event for m in got] == ["prompt"] * len(shown)
            assert {m.json()["id"] for m in got} == set(shown)
            ids = [int(m.id or 0) for m in got]
            assert ids == sorted(set(ids))
            for message in got:
                assert message.json() == shown[message.json()["id"]]
            assert client.quiet(1.0) == []  # deferred prompts are not pushed
        assert elsewhere.quiet(0.5) == []  # another team's screen sees nothing
    finally:
        for client in (by_token, by_key, elsewhere):
            client.close()


def test_an_outcome_from_the_screen_updates_every_screen(stack: Stack) -> None:
    blue = team()
    _, prompt_id = stack.publish(blue)
    token = stack.token(blue)
    watcher = SSEClient(f"{stack.b}/api/v1/stream", params={"token": token})
    try:
        r = requests.post(f"{stack.a}/api/v1/prompts/{prompt_id}/outcome",
                          json={"outcome": "referred", "staff_id": "st-1"},
                          headers={"X-Stream-Token": token}, timeout=10)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "referred"
        update = watcher.next_event()
        assert update.event == "prompt-updated"
        assert update.json()["id"] == prompt_id and update.json()["status"] == "referred"
    finally:
        watcher.close()

    # A token acts only within its filter, and only if its key may write.
    _, elsewhere = stack.publish(team())
    r = requests.post(f"{stack.a}/api/v1/prompts/{elsewhere}/outcome",
                      json={"outcome": "referred"}, headers={"X-Stream-Token": token},
                      timeout=10)
    assert_problem(r, 404)
    r = requests.post(f"{stack.a}/api/v1/prompts/{prompt_id}/outcome",
                      json={"outcome": "declined"},
                      headers={"X-Stream-Token": stack.token(blue, key="ro")}, timeout=10)
    assert_problem(r, 403)
    r = requests.post(f"{stack.a}/api/v1/prompts/{prompt_id}/outcome",
                      json={"outcome": "declined"}, headers={"X-Stream-Token": token + "x"},
                      timeout=10)
    assert_problem(r, 401)


def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(stack: Stack) -> None:
    blue = team()
    params = {"organisation": stack.org, "team": blue}
    first = SSEClient(f"{stack.a}/api/v1/stream", headers=stack.bearer(), params=params)
    try:
        before = [stack.publish(blue)[0] for _ in range(3)]
        assert [int(m.id or 0) for m in first.events(3)] == before
    finally:
        first.close()
    missed = [stack.publish(blue)[0] for _ in range(4)]
    stack.publish(team())  # not this screen's
    stack.publish(blue, organisation=stack.other_org)  # not this organisation's
    message_id, updated_prompt = stack.publish(blue)
    missed.append(message_id)
    missed.append(stack.publish(blue, kind="prompt-updated", prompt_id=updated_prompt)[0])

    again = SSEClient(f"{stack.b}/api/v1/stream",
                      headers={**stack.bearer(), "Last-Event-ID": str(before[-1])},
                      params=params)
    try:
        replayed = again.events(len(missed))
        assert [int(m.id or 0) for m in replayed] == missed
        assert replayed[-1].event == "prompt-updated"
        assert replayed[-1].json()["status"] == "not_now"  # the prompt as it is now
        live = [stack.publish(blue)[0] for _ in range(2)]
        assert [int(m.id or 0) for m in again.events(2)] == live
        assert again.quiet(1.0) == []
    finally:
        again.close()

    by_query = SSEClient(f"{stack.a}/api/v1/stream", headers=stack.bearer(),
                         params={**params, "last_event_id": missed[-1]})
    try:
        assert [int(m.id or 0) for m in by_query.events(2)] == live
    finally:
        by_query.close()


def test_no_gap_and_no_duplicate_while_reconnecting_under_load(stack: Stack) -> None:
    blue = team()
    published: list[int] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for _ in range(120):
                published.append(stack.publish(blue)[0])
                time.sleep(0.01)
        finally:
            done.set()

    received: list[int] = []
    with stack.db.session() as session:
        last: int | None = stream.latest_id(session, stack.org)  # the screen's cursor
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for round_ in range(40):  # bounded: each round is one connection
            headers = {**stack.bearer()}
            params = {"organisation": stack.org, "team": blue}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            client = SSEClient(f"{(stack.a, stack.b)[round_ % 2]}/api/v1/stream",
                               headers=headers, params=params)
            try:
                got = client.quiet(0.3) if not done.is_set() else client.quiet(1.5)
            finally:
                client.close()
            received.extend(int(m.id or 0) for m in got)
            if received:
                last = received[-1]
            if done.is_set() and len(received) >= len(published):
                break
    finally:
        thread.join(timeout=30)
    assert received == published, (
        f"missing {sorted(set(published) - set(received))[:10]}, "
        f"duplicated {len(received) - len(set(received))}")


def test_heartbeats_keep_an_idle_stream_alive(stack: Stack) -> None:
    client = SSEClient(f"{stack.a}/api/v1/stream", params={"token": stack.token(team())})
    try:
        started = time.monotonic()
        first = client.next_event(timeout=HEARTBEAT * 6, comments=True)
        second = client.next_event(timeout=HEARTBEAT * 6, comments=True)
        assert first.comment == second.comment == "hb"
        assert time.monotonic() - started >= HEARTBEAT * 0.9
    finally:
        client.close()


def test_recent_prompts_open_the_screen(stack: Stack) -> None:
    blue = team()
    ids = [stack.publish(blue) for _ in range(3)]
    token = stack.token(blue)
    r = requests.get(f"{stack.b}/api/v1/stream/recent", headers={"X-Stream-Token": token},
                     params={"limit": 2}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [p["id"] for p in body["items"]] == [ids[2][1], ids[1][1]]  # newest first
    assert body["last_event_id"] >= ids[2][0]


# ------------------------------------------------------------------------------ authorisation
def test_stream_authorisation(stack: Stack) -> None:
    url = f"{stack.a}/api/v1/stream"
    assert_problem(requests.get(url, params={"organisation": stack.org}, timeout=10), 401)
    assert_problem(requests.get(url, headers=stack.bearer("events"),
                                params={"organisation": stack.org}, timeout=10), 403)
    # Another organisation's stream does not exist, for a key or a token.
    assert_problem(requests.get(url, headers=stack.bearer("ro"),
                                params={"organisation": stack.other_org}, timeout=10), 404)
    token = stack.token(team())
    assert_problem(requests.get(url, params={"token": token, "organisation": stack.other_org},
                                timeout=10), 404)
    assert_problem(requests.get(url, params={"token": token, "team": "another"}, timeout=10),
                   404)
    r = requests.post(f"{stack.a}/api/v1/stream-tokens", headers=stack.bearer("ro"),
                      json={"organisation": stack.other_org}, timeout=10)
    assert_problem(r, 404)
    # A key for every organisation must say which one.
    body = assert_problem(requests.get(url, headers=stack.bearer("star"), timeout=10), 422)
    assert "organisation" in body["errors"]


@pytest.mark.parametrize("how", ["tampered", "expired", "other secret"])
def test_a_bad_token_is_refused(stack: Stack, how: str) -> None:
    token = stack.token(team())
    if how == "tampered":
        token = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    else:
        grant = tokens.StreamGrant(
            key_id=stack.key_ids["rw"], filter=tokens.StreamFilter(stack.org),
            may_write=True, expires_at=int(time.time()) - (5 if how == "expired" else -600),
            session_started=int(time.time()) - 900)
        token = tokens.sign_grant(SECRET_KEY if how == "expired" else "not-our-secret", grant)
    for path in ("/api/v1/stream", "/api/v1/stream/recent"):
        body = assert_problem(requests.get(f"{stack.a}{path}", params={"token": token},
                                           timeout=10), 401)
        assert ("expired" in body["detail"]) is (how == "expired")
    page = requests.get(f"{stack.a}/screen", params={"token": token}, timeout=10)
    assert page.status_code == 401 and "Open the prompt screen again" in page.text


def test_a_revoked_key_stops_streaming_at_reconnect(stack: Stack) -> None:
    blue = team()
    token = stack.token(blue, key="revocable")
    client = SSEClient(f"{stack.a}/api/v1/stream", params={"token": token})
    assert client.status_code == 200
    client.close()
    subprocess.run([MECC, "keys", "revoke", stack.key_ids["revocable"]], env=stack.env,
                   check=True, capture_output=True, timeout=60)
    again = requests.get(f"{stack.b}/api/v1/stream", params={"token": token}, timeout=10)
    assert_problem(again, 401)


def test_the_screen_page_needs_a_token_and_locks_itself_down(stack: Stack) -> None:
    assert requests.get(f"{stack.a}/screen", timeout=10).status_code == 401
    page = requests.get(f"{stack.a}/screen", params={"token": stack.token(team())}, timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    script = requests.get(f"{stack.a}/static/screen.js", timeout=10)
    assert script.status_code == 200 and "EventSource" in script.text
    assert ".innerHTML" not in script.text  # text only ever goes in as text


def test_a_screen_renews_its_token_for_the_same_filter(stack: Stack) -> None:
    blue = team()
    token = stack.token(blue, "st-7")
    r = requests.post(f"{stack.a}/api/v1/stream-tokens/renew",
                      headers={"X-Stream-Token": token}, timeout=10)
    assert r.status_code == 200, r.text
    renewed = tokens.read_grant(SECRET_KEY, r.json()["token"])
    assert renewed.filter == tokens.StreamFilter(stack.org, blue, "st-7")
    assert renewed.key_id == stack.key_ids["rw"]
    # Only a token renews a token; a key asks for a new one.
    assert_problem(requests.post(f"{stack.a}/api/v1/stream-tokens/renew",
                                 headers=stack.bearer(), timeout=10), 403)


# ------------------------------------------------------------------------------ in context
def test_a_token_for_one_person_streams_only_their_prompts(stack: Stack) -> None:
    blue = team()
    token = stack.token(blue, person_id="p-alice", source="stream-test")
    watcher = SSEClient(f"{stack.b}/api/v1/stream", params={"token": token})
    try:
        stack.publish(blue, person_id="p-bob")
        _, alice_prompt = stack.publish(blue, person_id="p-alice")
        got = watcher.next_event()
        assert got.json()["id"] == alice_prompt and got.json()["person_id"] == "p-alice"
        assert watcher.quiet(1.0) == []
    finally:
        watcher.close()
    # Opening the screen, and replaying after a reconnect, are narrowed the same way.
    recent = requests.get(f"{stack.a}/api/v1/stream/recent", timeout=10,
                          headers={"X-Stream-Token": token}).json()["items"]
    assert [p["id"] for p in recent] == [alice_prompt]
    replay = SSEClient(f"{stack.a}/api/v1/stream",
                       params={"token": token, "last_event_id": 0})
    try:
        assert [m.json()["id"] for m in replay.events(1)] == [alice_prompt]
        assert replay.quiet(0.5) == []
    finally:
        replay.close()
    # It acts on that person's prompts only.
    _, bobs = stack.publish(blue, person_id="p-bob")
    assert_problem(requests.post(f"{stack.a}/api/v1/prompts/{bobs}/outcome",
                                 json={"outcome": "not_now"},
                                 headers={"X-Stream-Token": token}, timeout=10), 404)
    r = requests.post(f"{stack.a}/api/v1/prompts/{alice_prompt}/outcome",
                      json={"outcome": "not_now"}, headers={"X-Stream-Token": token},
                      timeout=10)
    assert r.status_code == 201, r.text


def test_a_token_for_one_contact(stack: Stack) -> None:
    blue = team()
    _, first = stack.publish(blue, person_id="p-carl")
    stack.publish(blue, person_id="p-carl")  # the same person's next contact: not this one
    with stack.db.session() as session:
        contact = session.get_one(Prompt, first).event_id
    token = stack.token(blue, event=contact)
    assert [p["id"] for p in requests.get(
        f"{stack.a}/api/v1/stream/recent", headers={"X-Stream-Token": token},
        timeout=10).json()["items"]] == [first]
    url = f"{stack.a}/api/v1/stream-tokens"
    # Another person's contact, a source without a person, an unknown or foreign contact.
    for body, status in (({"event": contact, "person_id": "p-dora"}, 422),
                         ({"source": "stream-test"}, 422),
                         ({"event": str(uuid.uuid4())}, 404)):
        assert_problem(requests.post(url, json={"organisation": stack.org, **body},
                                     headers=stack.bearer(), timeout=10), status)
    _, foreign = stack.publish(blue, organisation=stack.other_org)
    with stack.db.session() as session:
        foreign_contact = session.get_one(Prompt, foreign).event_id
    assert_problem(requests.post(url, json={"organisation": stack.org,
                                            "event": foreign_contact},
                                 headers=stack.bearer(), timeout=10), 404)
