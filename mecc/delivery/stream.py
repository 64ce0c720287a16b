"""Live push to staff screens: stream tokens, replay from the database, and in-process fan-out.

- Stream tokens: EventSource cannot send headers, so a key with `prompts:read` exchanges itself
  for a short-lived token signed with MECC_SECRET_KEY (itsdangerous, which Flask already ships:
  no second crypto dependency and no algorithm choice to get wrong). The token names the key, so
  a revoked key stops streaming at its next connect, and the filter it may read.
- Fan-out: one Redis pub/sub subscriber thread per API process hands each announced message to
  the in-process queues of the clients whose filter matches it, so a thousand screens cost one
  Redis connection, not a thousand.
- No gap, no duplicate: a client is registered with the hub (subscribed) before the database
  replay runs; live messages already replayed are dropped by id. When the hub loses Redis, or a
  slow client's queue overflows, the client replays again from the last id it sent.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.delivery import push
from mecc.intake.read import prompt_dict
from mecc.platform.errors import NotFound, Unauthorized, ValidationFailed
from mecc.platform.runtime import Runtime
from mecc.store.models import ApiKey, Prompt, PushMessage

log = logging.getLogger(__name__)
TOKEN_SALT = "mecc.stream-token.v1"  # noqa: S105 - a salt (domain separation), not a secret
REPLAY_BATCH = 500
QUEUE_SIZE = 256  # per client; a client further behind than this replays from the database
RETRY_MS = 2000  # EventSource reconnection delay


# ------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class StreamSettings:
    token_seconds: int = 900  # a token's life; the screen renews it before it ends
    session_seconds: int = 43_200  # renewals stop this long after the first token (a shift)
    heartbeat_seconds: float = 15.0


def _number(raw: Any, name: str, default: float, lo: float, hi: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def stream_settings(runtime: Runtime, env: Mapping[str, str] | None = None) -> StreamSettings:
    """From Settings.extra (tests) or MECC_STREAM_* environment variables."""
    cached = runtime.extras.get("stream_settings")
    if cached is not None and env is None:
        return cached  # type: ignore[no-any-return]
    env = os.environ if env is None else env
    extra = runtime.settings.extra

    def pick(key: str, name: str, default: float, lo: float, hi: float) -> float:
        return _number(extra.get(key, env.get(name)), name, default, lo, hi)

    result = StreamSettings(
        token_seconds=int(pick("stream_token_seconds", "MECC_STREAM_TOKEN_SECONDS",
                               900, 5, 86_400)),
        session_seconds=int(pick("stream_session_seconds", "MECC_STREAM_SESSION_SECONDS",
                                 43_200, 60, 7 * 86_400)),
        heartbeat_seconds=pick("stream_heartbeat_seconds", "MECC_STREAM_HEARTBEAT_SECONDS",
                               15.0, 0.1, 300.0))
    runtime.extras["stream_settings"] = result
    return result


# ------------------------------------------------------------------------------ filters, tokens
@dataclass(frozen=True)
class StreamFilter:
    """Which messages a client sees: one organisation, optionally one team and one member."""

    organisation: str
    team: str | None = None
    staff_id: str | None = None

    def matches(self, organisation: str | None, team: str | None, staff_id: str | None) -> bool:
        return (organisation == self.organisation
                and (self.team is None or team == self.team)
                and (self.staff_id is None or staff_id == self.staff_id))

    def narrowed(self, team: str | None, staff_id: str | None) -> StreamFilter:
        """Narrow a bound filter further; asking for what it excludes reveals nothing (404)."""
        for asked, bound, what in ((team, self.team, "team"),
                                   (staff_id, self.staff_id, "member of staff")):
            if asked is not None and bound is not None and asked != bound:
                raise NotFound(f"This token does not cover that {what}.")
        return StreamFilter(self.organisation, self.team if self.team is not None else team,
                            self.staff_id if self.staff_id is not None else staff_id)


def resolve_filter(principal: Principal, organisation: str | None, team: str | None,
                   staff_id: str | None) -> StreamFilter:
    """The filter a key may ask for: its own organisation, or any one for a '*' key."""
    if organisation is None:
        if principal.is_all_organisations:
            raise ValidationFailed(
                "A key for all organisations must name the organisation to stream.",
                errors={"organisation": ["Required for a key that covers all organisations."]})
        organisation = principal.organisation
    organisation = organisation.strip().upper()
    if not principal.may_access(organisation):
        raise NotFound(f"No organisation {organisation} visible to this key.")
    return StreamFilter(organisation, team or None, staff_id or None)


@dataclass(frozen=True)
class StreamGrant:
    """What a stream token allows: read (and, if its key could, record outcomes) for a filter."""

    key_id: str
    filter: StreamFilter
    may_write: bool
    expires_at: int  # epoch seconds
    session_started: int  # epoch seconds of the first token in a chain of renewals

    @property
    def expires_at_iso(self) -> str:
        return datetime.fromtimestamp(self.expires_at, UTC).isoformat().replace("+00:00", "Z")


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=TOKEN_SALT)


def new_grant(principal: Principal, flt: StreamFilter, *, ttl: int,
              now: float | None = None) -> StreamGrant:
    if not principal.may_access(flt.organisation):
        raise NotFound(f"No organisation {flt.organisation} visible to this key.")
    issued = int(now if now is not None else time.time())
    return StreamGrant(key_id=principal.key_id, filter=flt,
                       may_write=principal.has_scope("prompts:write"),
                       expires_at=issued + ttl, session_started=issued)


def renewed(grant: StreamGrant, *, ttl: int, session_seconds: int,
            now: float | None = None) -> StreamGrant:
    """The same grant for another `ttl`, never past the end of the session."""
    now_s = int(now if now is not None else time.time())
    ends = grant.session_started + session_seconds
    if now_s >= ends:
        raise Unauthorized("This screen session has ended; open the screen again from the "
                           "clinical system.")
    return StreamGrant(grant.key_id, grant.filter, grant.may_write,
                       min(now_s + ttl, ends), grant.session_started)


def sign_grant(secret: str, grant: StreamGrant) -> str:
    f = grant.filter
    return str(_serializer(secret).dumps({
        "k": grant.key_id, "o": f.organisation, "t": f.team, "s": f.staff_id,
        "w": grant.may_write, "e": grant.expires_at, "i": grant.session_started}))


def read_grant(secret: str, token: str, *, now: float | None = None) -> StreamGrant:
    """The grant a token carries; 401 when it was not signed by us or has expired."""
    try:
        raw = _serializer(secret).loads(token)
        grant = StreamGrant(key_id=str(raw["k"]),
                            filter=StreamFilter(str(raw["o"]), raw["t"], raw["s"]),
                            may_write=bool(raw["w"]), expires_at=int(raw["e"]),
                            session_started=int(raw["i"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        raise Unauthorized("The stream token is not valid.") from None
    if (now if now is not None else time.time()) >= grant.expires_at:
        raise Unauthorized("The stream token has expired; ask for a new one.")
    return grant


def key_principal(session: Session, key_id: str) -> Principal | None:
    """The issuing key, while it is not revoked."""
    from mecc.admin.keys import principal_of

    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    return principal_of(row)


def authenticate_token(runtime: Runtime, token: str) -> tuple[StreamGrant, Principal]:
    """A grant and the principal it acts as: the issuing key, narrowed to the grant.

    The key is read afresh on every connect, so a revoked key stops streaming at the next
    reconnect and a token never carries more than its key still has.
    """
    grant = read_grant(runtime.settings.secret_key, token)
    with runtime.db.session() as session:
        key = key_principal(session, grant.key_id)
    if key is None or not key.has_scope("prompts:read") \
            or not key.may_access(grant.filter.organisation):
        raise Unauthorized("The key behind this stream token has been revoked or changed.")
    scopes = {"prompts:read"}
    if grant.may_write and key.has_scope("prompts:write"):
        scopes.add("prompts:write")
    return grant, Principal(key_id=key.key_id, name=key.name,
                            organisation=grant.filter.organisation, scopes=frozenset(scopes))


def check_prompt_in_grant(runtime: Runtime, grant: StreamGrant, prompt_id: str) -> None:
    """A token may act only on the prompts its screen could show."""
    with runtime.db.session() as session:
        prompt = session.get(Prompt, prompt_id)
        if prompt is None or not grant.filter.matches(prompt.organisation, prompt.team,
                                                      prompt.staff_id):
            raise NotFound("No prompt with this id.")


# ------------------------------------------------------------------------------ messages, replay
class Frame:
    """One SSE message, encoded once and shared by every client that receives it."""

    __slots__ = ("id", "organisation", "team", "staff_id", "wire")

    def __init__(self, id: int, event: str, organisation: str | None, team: str | None,
                 staff_id: str | None, data: str) -> None:
        self.id = id
        self.organisation = organisation
        self.team = team
        self.staff_id = staff_id
        self.wire = f"id: {id}\nevent: {event}\ndata: {data}\n\n"

    @classmethod
    def from_announcement(cls, raw: bytes | str) -> Frame | None:
        try:
            m = json.loads(raw)
            return cls(int(m["id"]), str(m["event"]), m.get("organisation"), m.get("team"),
                       m.get("staff_id"), json.dumps(m["data"]))
        except (ValueError, KeyError, TypeError):
            log.warning("push: ignored a malformed announcement")
            return None


HEARTBEAT = ": hb\n\n"
_RESYNC = object()  # queue marker: replay from the database, something may have been missed


def _in_filter(query: Any, flt: StreamFilter) -> Any:
    query = query.where(PushMessage.organisation == flt.organisation)
    if flt.team is not None:
        query = query.where(PushMessage.team == flt.team)
    if flt.staff_id is not None:
        query = query.where(PushMessage.staff_id == flt.staff_id)
    return query


def latest_id(session: Session, organisation: str) -> int:
    return int(session.scalar(select(func.max(PushMessage.id))
                              .where(PushMessage.organisation == organisation)) or 0)


def replay(session: Session, flt: StreamFilter, after_id: int,
           limit: int = REPLAY_BATCH) -> list[Frame]:
    """Messages after `after_id` for this filter, with each prompt as it is now."""
    rows = session.execute(
        _in_filter(select(PushMessage, Prompt).join(Prompt, Prompt.id == PushMessage.prompt_id),
                   flt)
        .where(PushMessage.id > after_id).order_by(PushMessage.id).limit(limit))
    return [Frame(m.id, m.kind, m.organisation, m.team, m.staff_id, json.dumps(prompt_dict(p)))
            for m, p in rows]


def recent_prompts(runtime: Runtime, flt: StreamFilter, limit: int) -> dict[str, Any]:
    """The newest pushed prompts for a freshly opened screen, and the id to stream after."""
    pushed = select(PushMessage.id).where(PushMessage.prompt_id == Prompt.id,
                                          PushMessage.kind == "prompt").exists()
    query = select(Prompt).where(Prompt.organisation == flt.organisation, pushed)
    if flt.team is not None:
        query = query.where(Prompt.team == flt.team)
    if flt.staff_id is not None:
        query = query.where(Prompt.staff_id == flt.staff_id)
    with runtime.db.session() as session:
        # Read the cursor first: whatever lands after it is replayed by the stream, so the
        # screen misses nothing between this answer and its EventSource opening.
        cursor = latest_id(session, flt.organisation)
        rows = session.scalars(query.order_by(Prompt.created_at.desc(), Prompt.id.desc())
                               .limit(limit))
        return {"items": [prompt_dict(p) for p in rows], "last_event_id": cursor}


# ------------------------------------------------------------------------------ fan-out
class Subscription:
    __slots__ = ("filter", "queue", "overflowed")

    def __init__(self, flt: StreamFilter) -> None:
        self.filter = flt
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)
        self.overflowed = False

    def offer(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.overflowed = True  # the client replays from the database instead


class Hub:
    """One Redis pub/sub subscriber per process, distributing to in-process client queues."""

    def __init__(self, redis_url: str, channel: str | None = None) -> None:
        self.redis_url = redis_url
        self.channel = channel or push.channel_for(redis_url)
        self.connected = threading.Event()
        self._lock = threading.Lock()
        # Copy-on-write tuples: the dispatching thread reads them without taking the lock.
        self._by_org: dict[str, tuple[Subscription, ...]] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="mecc-push-hub", daemon=True)
            self._thread.start()

    @property
    def client_count(self) -> int:
        return sum(len(subs) for subs in self._by_org.values())

    def register(self, flt: StreamFilter) -> Subscription:
        self.start()
        sub = Subscription(flt)
        with self._lock:
            self._by_org[flt.organisation] = (*self._by_org.get(flt.organisation, ()), sub)
        return sub

    def unregister(self, sub: Subscription) -> None:
        with self._lock:
            rest = tuple(s for s in self._by_org.get(sub.filter.organisation, ()) if s is not sub)
            if rest:
                self._by_org[sub.filter.organisation] = rest
            else:
                self._by_org.pop(sub.filter.organisation, None)

    def dispatch(self, frame: Frame) -> None:
        for sub in self._by_org.get(frame.organisation or "", ()):
            if sub.filter.matches(frame.organisation, frame.team, frame.staff_id):
                sub.offer(frame)

    def _resync_all(self) -> None:
        for subs in list(self._by_org.values()):
            for sub in subs:
                sub.offer(_RESYNC)

    def _run(self) -> None:
        backoff = 0.5
        while True:
            client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2,
                                          socket_timeout=15, health_check_interval=5)
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self.connected.set()
                        backoff = 0.5
                        # Announcements made while we were not subscribed are lost to pub/sub:
                        # every client catches up from the database.
                        self._resync_all()
                    elif message["type"] == "message":
                        frame = Frame.from_announcement(message["data"])
                        if frame is not None:
                            self.dispatch(frame)
            except (redis.RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("push hub lost Redis; reconnecting", extra={
                    "error": type(exc).__name__})
            finally:
                try:
                    pubsub.close()
                    client.close()
                except (redis.RedisError, OSError):
                    pass
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def hub_for(runtime: Runtime) -> Hub:
    hub = runtime.extras.get("push_hub")
    if hub is None:
        hub = runtime.extras.setdefault("push_hub", Hub(runtime.settings.redis_url))
    return hub  # type: ignore[no-any-return]


class _Sent:
    """Ids this connection has sent (bounded), and the floor at or below which all are known."""

    def __init__(self, floor: int, keep: int = 4096) -> None:
        self.floor = floor
        self.high = floor
        self._ids: set[int] = set()
        self._order: deque[int] = deque()
        self._keep = keep

    def is_new(self, message_id: int) -> bool:
        return message_id > self.floor and message_id not in self._ids

    def add(self, message_id: int) -> None:
        self._ids.add(message_id)
        self._order.append(message_id)
        self.high = max(self.high, message_id)
        if len(self._order) > self._keep:
            old = self._order.popleft()
            self._ids.discard(old)
            self.floor = max(self.floor, old)


def event_stream(runtime: Runtime, flt: StreamFilter, last_event_id: int | None, *,
                 heartbeat: float, ends_at: float | None = None) -> Iterator[str]:
    """The SSE body: replay after `last_event_id`, then live messages, heartbeats when idle.

    Ends at `ends_at` (a token's expiry): the screen has renewed its token by then and
    reconnects with it; a revoked key cannot.
    """
    hub = hub_for(runtime)
    if last_event_id is None:
        # Read before subscribing: anything after this is replayed, so nothing falls between.
        with runtime.db.session() as session:
            last_event_id = latest_id(session, flt.organisation)
    sub = hub.register(flt)
    sent = _Sent(last_event_id)
    try:
        # Headers and the reconnection delay go out at once. If the hub is not yet subscribed,
        # it asks every client to replay again when it is, so nothing falls in between.
        yield f"retry: {RETRY_MS}\n\n"
        pending_replay = True
        last_write = time.monotonic()
        while True:
            if pending_replay or sub.overflowed:
                pending_replay = sub.overflowed = False
                while True:
                    try:
                        sub.queue.get_nowait()  # all of it is in the database
                    except queue.Empty:
                        break
                while True:
                    with runtime.db.session() as session:
                        frames = replay(session, flt, sent.high)
                    for frame in frames:
                        if sent.is_new(frame.id):
                            sent.add(frame.id)
                            yield frame.wire
                    if len(frames) < REPLAY_BATCH:
                        break
                last_write = time.monotonic()
            now = time.monotonic()
            if ends_at is not None and time.time() >= ends_at:
                return
            wait = heartbeat - (now - last_write)
            if ends_at is not None:
                wait = min(wait, ends_at - time.time())
            try:
                item = sub.queue.get(timeout=max(0.01, wait))
            except queue.Empty:
                if time.monotonic() - last_write >= heartbeat:
                    yield HEARTBEAT
                    last_write = time.monotonic()
                continue
            if item is _RESYNC:
                pending_replay = True
            elif sent.is_new(item.id):
                sent.add(item.id)
                yield item.wire
                last_write = time.monotonic()
    finally:
        hub.unregister(sub)
