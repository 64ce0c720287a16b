"""The SSE stream a staff screen reads: replay from the database, then live messages.

No gap, no duplicate: a client is registered with the hub (subscribed, mecc.delivery.hub) before
the database replay runs; live messages already replayed are dropped by id. When the hub loses
Redis, or a slow client's queue overflows, the client replays again from the last id it sent.
Who may stream what is settled by the stream token (mecc.delivery.tokens).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.delivery.hub import RESYNC, Frame
from mecc.delivery.tokens import StreamFilter, key_principal
from mecc.intake.read import prompt_dicts
from mecc.platform.runtime import Runtime
from mecc.store.models import Prompt, PushMessage

REPLAY_BATCH = 500
RETRY_MS = 2000  # EventSource reconnection delay
HEARTBEAT = ": hb\n\n"
# The screens of one clinic stream under one key: its state is read at most this often per
# process, however many of them are open (well inside any heartbeat).
KEY_CHECK_SECONDS = 1.0
_checked: dict[str, tuple[float, Principal | None]] = {}
_checked_lock = threading.Lock()


@dataclass(frozen=True)
class StreamSettings:
    token_seconds: int = 900  # a token's life; the screen renews it before it ends
    session_seconds: int = 43_200  # renewals stop this long after the first token (a shift)
    heartbeat_seconds: float = 15.0


def stream_settings(runtime: Runtime) -> StreamSettings:
    """The MECC_STREAM_* settings (read into Settings by Settings.from_env)."""
    settings = runtime.settings
    return StreamSettings(token_seconds=settings.stream_token_seconds,
                          session_seconds=settings.stream_session_seconds,
                          heartbeat_seconds=settings.stream_heartbeat_seconds)


def _in_filter(query: Any, flt: StreamFilter) -> Any:
    """Messages for this filter (the query joins Prompt)."""
    query = query.where(PushMessage.organisation == flt.organisation)
    if flt.team is not None:
        query = query.where(PushMessage.team == flt.team)
    if flt.staff_id is not None:
        query = query.where(PushMessage.staff_id == flt.staff_id)
    return _whose(query, flt)


def _whose(query: Any, flt: StreamFilter) -> Any:
    """Only this person's (or this contact's) prompts, for a screen opened in context."""
    for column, value in ((Prompt.person_id, flt.person_id), (Prompt.source, flt.source),
                          (Prompt.event_id, flt.event)):
        if value is not None:
            query = query.where(column == value)
    return query


def latest_id(session: Session, organisation: str) -> int:
    return int(session.scalar(select(func.max(PushMessage.id))
                              .where(PushMessage.organisation == organisation)) or 0)


def replay(session: Session, flt: StreamFilter, after_id: int,
           limit: int = REPLAY_BATCH) -> list[Frame]:
    """Messages after `after_id` for this filter, with each prompt as it is now."""
    rows = list(session.execute(
        _in_filter(select(PushMessage, Prompt).join(Prompt, Prompt.id == PushMessage.prompt_id),
                   flt)
        .where(PushMessage.id > after_id).order_by(PushMessage.id).limit(limit)))
    shown = prompt_dicts(session, [p for _, p in rows])
    return [Frame(m.id, m.kind, m.organisation, m.team, m.staff_id, json.dumps(data),
                  person_id=p.person_id, source=p.source, contact=p.event_id)
            for (m, p), data in zip(rows, shown, strict=True)]


def recent_prompts(runtime: Runtime, flt: StreamFilter, limit: int) -> dict[str, Any]:
    """The newest pushed prompts for a freshly opened screen, and the id to stream after."""
    pushed = select(PushMessage.id).where(PushMessage.prompt_id == Prompt.id,
                                          PushMessage.kind == "prompt").exists()
    query = select(Prompt).where(Prompt.organisation == flt.organisation, pushed)
    if flt.team is not None:
        query = query.where(Prompt.team == flt.team)
    if flt.staff_id is not None:
        query = query.where(Prompt.staff_id == flt.staff_id)
    query = _whose(query, flt)
    with runtime.db.session() as session:
        # Read the cursor first: whatever lands after it is replayed by the stream, so the
        # screen misses nothing between this answer and its EventSource opening.
        cursor = latest_id(session, flt.organisation)
        rows = list(session.scalars(query.order_by(Prompt.created_at.desc(), Prompt.id.desc())
                                    .limit(limit)))
        return {"items": prompt_dicts(session, rows), "last_event_id": cursor}


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


def still_permitted(runtime: Runtime, key_id: str, scope: str, organisation: str) -> bool:
    """Whether the key (or person) behind a stream may still read this organisation's
    prompts: not revoked (or disabled), the scope kept, the organisation still covered."""
    now = time.monotonic()
    hit = _checked.get(key_id)
    if hit is not None and now - hit[0] < KEY_CHECK_SECONDS:
        principal = hit[1]
    else:
        with runtime.db.session() as session:
            principal = key_principal(session, key_id)
        with _checked_lock:
            if len(_checked) > 10_000:
                _checked.clear()
            _checked[key_id] = (now, principal)
    return principal is not None and principal.has_scope(scope) \
        and principal.may_access(organisation)


def event_stream(runtime: Runtime, flt: StreamFilter, last_event_id: int | None, *,
                 heartbeat: float, ends_at: float | None = None,
                 still_allowed: Callable[[], bool] | None = None) -> Iterator[str]:
    """The SSE body: replay after `last_event_id`, then live messages, heartbeats when idle.

    Ends at `ends_at` (a token's expiry): the screen has renewed its token by then and
    reconnects with it; a revoked key cannot. `still_allowed` is asked at least once a
    heartbeat, and the stream ends as soon as it says no: a key revoked while its screens are
    open (a bearer key's stream has no expiry at all) stops delivering within a heartbeat.
    """
    hub = runtime.push_hub
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
        last_write = last_check = time.monotonic()
        while True:
            if still_allowed is not None and time.monotonic() - last_check >= heartbeat:
                if not still_allowed():
                    return
                last_check = time.monotonic()
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
            if item is RESYNC:
                pending_replay = True
            elif sent.is_new(item.id):
                sent.add(item.id)
                yield item.wire
                last_write = time.monotonic()
    finally:
        hub.unregister(sub)
