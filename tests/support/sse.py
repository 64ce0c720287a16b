"""A real Server-Sent Events client: an HTTP stream read by a thread into a queue."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass
class SSE:
    """One parsed message: an event with id and data, or a comment (heartbeat)."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    comment: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.data)


def parse_block(block: str) -> SSE:
    message = SSE()
    data: list[str] = []
    for line in block.split("\n"):
        if line.startswith(":"):
            message.comment = line[1:].strip()
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            message.event = value
        elif name == "id":
            message.id = value
        else:
            message.fields[name] = value
    message.data = "\n".join(data)
    return message


class SSEClient:
    """A real HTTP client on the stream; a thread parses messages into a queue."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None,
                 params: Mapping[str, Any] | None = None) -> None:
        self.response = requests.get(url, headers=dict(headers or {}), params=params,
                                     stream=True, timeout=(5, 60))
        self.status_code = self.response.status_code
        self.messages: queue.Queue[SSE | None] = queue.Queue()
        self._closing = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        if self.status_code == 200:
            self._thread.start()

    def _read(self) -> None:
        buffer = ""
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                if self._closing:
                    break  # the server's heartbeats wake us up to notice
                buffer += chunk.decode()
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    self.messages.put(parse_block(block))
        except (requests.RequestException, OSError, ValueError, AttributeError):
            pass  # closed by close(), or by the server
        finally:
            self.messages.put(None)

    def next_event(self, timeout: float = 10.0, *, comments: bool = False) -> SSE:
        """The next prompt message (or comment, when asked); AssertionError on timeout/end."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no SSE message within {timeout} s")
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if message is None:
                raise AssertionError("the stream ended")
            if message.event is not None or (comments and message.comment is not None):
                return message

    def events(self, count: int, timeout: float = 15.0) -> list[SSE]:
        deadline = time.monotonic() + timeout
        return [self.next_event(max(0.01, deadline - time.monotonic())) for _ in range(count)]

    def quiet(self, seconds: float) -> list[SSE]:
        """Every prompt message that arrives within `seconds` (expected: none)."""
        got: list[SSE] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                message = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if message is None:
                break
            if message.event is not None:
                got.append(message)
        return got

    def close(self) -> None:
        self._closing = True
        self.response.close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
