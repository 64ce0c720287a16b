"""The in-process fan-out of announced push messages to the streams open in this process.

One Redis pub/sub subscriber thread per API process hands each announced message to the
in-process queues of the clients whose filter matches it, so a thousand screens cost one Redis
connection, not a thousand. When the hub (re)subscribes, or a slow client's queue overflows, the
clients are told to replay from the database, since pub/sub keeps nothing for the absent.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from typing import Any

import redis

from mecc.delivery import push
from mecc.delivery.tokens import StreamFilter

log = logging.getLogger(__name__)
QUEUE_SIZE = 256  # per client; a client further behind than this replays from the database
RESYNC = object()  # queue marker: replay from the database, something may have been missed


class Frame:
    """One SSE message, encoded once and shared by every client that receives it."""

    __slots__ = ("id", "organisation", "team", "staff_id", "person_id", "source", "contact",
                 "wire")

    def __init__(self, id: int, event: str, organisation: str | None, team: str | None,
                 staff_id: str | None, data: str, *, person_id: str | None = None,
                 source: str | None = None, contact: str | None = None) -> None:
        self.id = id
        self.organisation = organisation
        self.team = team
        self.staff_id = staff_id
        # Whose prompt, for screens narrowed to one person or one contact (`contact` is the
        # event's uuid; `event` above is the SSE event name).
        self.person_id = person_id
        self.source = source
        self.contact = contact
        self.wire = f"id: {id}\nevent: {event}\ndata: {data}\n\n"

    @classmethod
    def from_announcement(cls, raw: bytes | str) -> Frame | None:
        try:
            m = json.loads(raw)
            data = m["data"]
            return cls(int(m["id"]), str(m["event"]), m.get("organisation"), m.get("team"),
                       m.get("staff_id"), json.dumps(data), person_id=data.get("person_id"),
                       source=data.get("source"), contact=data.get("event"))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("push: ignored a malformed announcement")
            return None

    def seen_by(self, flt: StreamFilter) -> bool:
        return flt.matches(self.organisation, self.team, self.staff_id, self.person_id,
                           self.source, self.contact)


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
            if frame.seen_by(sub.filter):
                sub.offer(frame)

    def _resync_all(self) -> None:
        for subs in list(self._by_org.values()):
            for sub in subs:
                sub.offer(RESYNC)

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
                    pass  # the connection is already broken; closing it is only tidying up
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
