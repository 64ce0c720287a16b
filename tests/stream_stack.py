"""Real processes for the live-push tests: gunicorn API processes, a Celery worker, and an SSE
client. Everything listens on 127.0.0.1; each process is stopped by its own id."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MECC = str(Path(PYTHON).with_name("mecc"))
STREAM_REDIS_URL = "redis://127.0.0.1:6379/10"  # the live-push tests' own Redis database
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
SECRET = "stream-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flush_redis(url: str = STREAM_REDIS_URL) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()  # this database only
    finally:
        client.close()


def new_database(kind: str, directory: Path, prefix: str = "mecc_test_stream"
                 ) -> tuple[str, Any]:
    """A fresh, migrated database; returns (url, drop) where drop() removes it."""
    from mecc.store.migrate import upgrade

    if kind == "sqlite":
        url = f"sqlite:///{directory / 'stream.db'}"
        upgrade(url)
        return url, lambda: None
    import psycopg

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    upgrade(url)

    def drop() -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


def stack_env(database_url: str, var_dir: Path, redis_url: str = STREAM_REDIS_URL,
              **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MECC_DATABASE_URL": database_url, "MECC_REDIS_URL": redis_url,
                "MECC_VAR_DIR": str(var_dir), "MECC_SECRET_KEY": SECRET,
                "MECC_PSEUDONYM_KEY": "stream-test-pseudonym", "MECC_LOG_LEVEL": "WARNING"})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


def seed(env: Mapping[str, str]) -> None:
    """The default rule pack and services, as `make run` loads them."""
    subprocess.run([MECC, "seed"], env=dict(env), check=True, capture_output=True, timeout=180)


def create_key(env: Mapping[str, str], organisation: str, *scopes: str) -> tuple[str, str]:
    """(key id, key) made by the CLI, as an administrator would."""
    out = subprocess.run(
        [MECC, "keys", "create", "--json", "--name", f"stream-{uuid.uuid4().hex[:6]}",
         "--organisation", organisation, *[a for s in scopes for a in ("--scope", s)]],
        env=dict(env), check=True, capture_output=True, text=True, timeout=60)
    created = json.loads(out.stdout.strip().splitlines()[-1])
    return str(created["id"]), str(created["key"])


class Proc:
    """A child in its own session, logging to a file; stopped by its own pid."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(argv, env=dict(env), cwd=ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 15.0) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()


def start_api(env: Mapping[str, str], log_dir: Path, name: str = "api") -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(name, [PYTHON, "-m", "gunicorn", "--config", "python:mecc.platform.gunicorn_conf",
                       "--workers", "1", "--bind", f"127.0.0.1:{port}", "mecc.api:create_app()"],
                env, log_dir)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{name} exited:\n{proc.log_text()[-3000:]}")
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except requests.RequestException:
            time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"{name} did not answer:\n{proc.log_text()[-3000:]}")


def start_worker(env: Mapping[str, str], log_dir: Path, concurrency: int = 1) -> Proc:
    proc = Proc("worker", [PYTHON, "-m", "celery", "-A", "mecc.worker", "worker", "--loglevel",
                           "INFO", "--concurrency", str(concurrency), "--without-gossip",
                           "--without-mingle",
                           "--hostname", f"stream-test-{os.getpid()}-{uuid.uuid4().hex[:4]}@%h"],
                env, log_dir)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"worker exited:\n{proc.log_text()[-3000:]}")
        if " ready." in proc.log_text():
            return proc
        time.sleep(0.3)
    proc.stop()
    raise RuntimeError("the Celery worker did not become ready")


# ------------------------------------------------------------------------------ SSE client
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
