"""(f) The webhook receivers: one fails, hangs and recovers; the other answers 410 Gone."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The sender's limits (mecc.delivery.webhooks.TIMEOUTS): a receiver slower than this has failed.
HOOK_TIMEOUT = 10.0
HANG_SECONDS = HOOK_TIMEOUT + 2  # a hung request is answered (into a closed socket) after this
HOOK_BASE_DELAY = 1  # MECC_WEBHOOK_BASE_DELAY_SECONDS for the run (production 5 s)
GONE_AFTER = 3  # the 410 receiver accepts this many deliveries, then answers 410 Gone
GONE_EVERY = 5  # one event in five calls the 410 receiver back, the rest the recovering one
# (f) runs the worker and beat with the production time limits: the deliver task's budget is
# its soft time limit less the 10 s timeout, which the fault run's 10 s limit would leave at
# zero, and a hung receiver would outlast the 9 s soft limit. Beat too, because the sweep's
# message carries beat's limits and the worker applies those.
HOOK_WORKER_ENV = {"MECC_TASK_TIME_LIMIT": "60", "MECC_EVALUATION_LEASE_SECONDS": "90",
                   "MECC_WEBHOOK_BASE_DELAY_SECONDS": str(HOOK_BASE_DELAY)}


@dataclass
class Received:
    """One request a receiver got, and what it answered."""

    endpoint: str  # "recovering" | "gone"
    at: float  # time.time() when the body had been read
    webhook_id: str
    answer: int | str  # a status code, or "hang"
    verified: bool
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # the webhook-* ones


class Receiver:
    """Two webhook receivers on 127.0.0.1, each a threaded http.server, misbehaving in phases.

    `recovering` answers 500 for `fail_seconds` from start(), then for `hang_seconds` holds one
    request in two for HANG_SECONDS (past the sender's timeout) and answers 200 to the others,
    then answers 200. `gone` answers 200 to its first GONE_AFTER requests, then 410 Gone.
    Every body's Standard Webhooks signature is checked against the key's secret on arrival.
    """

    def __init__(self, fail_seconds: float, hang_seconds: float) -> None:
        self.fail_seconds = fail_seconds
        self.hang_seconds = hang_seconds
        self.secret = ""
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._started = 0.0
        self._phase_two = 0
        self._gone_seen = 0
        self._servers = {name: self._server(name) for name in ("recovering", "gone")}
        self._threads: list[threading.Thread] = []

    def port(self, endpoint: str) -> int:
        return int(self._servers[endpoint].server_address[1])

    def url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.port(endpoint)}/hooks/{endpoint}"

    def start(self) -> Receiver:
        self._started = time.monotonic()
        for server in self._servers.values():
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            if self._threads:
                server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def requests(self, endpoint: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.endpoint == endpoint]

    def _decide(self, endpoint: str) -> int | str:
        with self._lock:
            if endpoint == "gone":
                self._gone_seen += 1
                return 200 if self._gone_seen <= GONE_AFTER else 410
            since = time.monotonic() - self._started
            if since < self.fail_seconds:
                return 500
            if since < self.fail_seconds + self.hang_seconds:
                self._phase_two += 1
                return "hang" if self._phase_two % 2 else 200
            return 200

    def verify(self, body: bytes, headers: dict[str, str], secret: str | None = None) -> bool:
        from standardwebhooks import Webhook, WebhookVerificationError

        try:
            Webhook(secret or self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError):
            return False
        return True

    def _server(self, endpoint: str) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()
                           if k.lower().startswith("webhook-")}
                answer = receiver._decide(endpoint) if self.path == f"/hooks/{endpoint}" else 404
                verified = receiver.verify(body, headers)
                with receiver._lock:
                    receiver.received.append(Received(
                        endpoint, time.time(), headers.get("webhook-id", ""), answer, verified,
                        body, headers))
                if answer == "hang":
                    time.sleep(HANG_SECONDS)
                    answer = 503
                try:
                    self.send_response(int(answer))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up on a hung request and closed the connection

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        return server
