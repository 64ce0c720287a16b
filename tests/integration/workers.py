"""A real Celery worker process (and beat, for the relay) for integration tests.

`celery -A mecc.worker worker` runs as a subprocess against the test's database and a Redis
database of its own (not the one conftest's `redis_url` flushes, so that other tests' stray
messages never reach it). No eager mode: the app under test publishes to Redis and this
process, forked children and all, does the work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER_REDIS_URL = os.environ.get("MECC_TEST_WORKER_REDIS_URL", "redis://127.0.0.1:6379/12")
READY_SECONDS = 60
T = TypeVar("T")


class CeleryProcess:
    """One `celery -A mecc.worker worker|beat` subprocess; its output goes to a log file that
    failures show."""

    def __init__(self, kind: str, env: Mapping[str, str], log_dir: Path,
                 options: list[str]) -> None:
        self.kind = kind
        self.log_path = log_dir / f"{kind}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mecc.worker", kind, "--loglevel", "INFO",
             *options],
            env=dict(env), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, marker: str, timeout: float = READY_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                pytest.fail(f"the {self.kind} exited with {self.popen.returncode}:\n"
                            f"{self.tail()}")
            if marker in self.log():
                return
            time.sleep(0.1)
        pytest.fail(f"the {self.kind} was not ready within {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)  # warm shutdown: finish the current task
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._log.close()


def worker_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """The worker reads the same settings as the app under test, from the environment."""
    env = dict(os.environ)
    env.update({
        "MECC_DATABASE_URL": str(settings["database_url"]),
        "MECC_REDIS_URL": str(settings["redis_url"]),
        "MECC_VAR_DIR": str(settings["var_dir"]),
        "MECC_SECRET_KEY": str(settings["secret_key"]),
        "MECC_PSEUDONYM_KEY": str(settings["pseudonym_key"]),
        "MECC_LOG_LEVEL": "INFO",
    })
    env.pop("MECC_BROKER_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


@contextmanager
def running_worker(settings: Mapping[str, Any], log_dir: Path, *,
                   concurrency: int = 1) -> Iterator[CeleryProcess]:
    """A started, ready worker (prefork) for the duration of the block, then a warm shutdown."""
    worker = CeleryProcess("worker", worker_env(settings), log_dir, [
        "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
        "--without-heartbeat", "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h"])
    try:
        worker.wait_for_log(" ready.")
        yield worker
    finally:
        worker.stop()


@contextmanager
def running_beat(settings: Mapping[str, Any], log_dir: Path) -> Iterator[CeleryProcess]:
    """Celery beat, which sends the relay task every few seconds."""
    beat = CeleryProcess("beat", worker_env(settings), log_dir, [
        "--schedule", str(log_dir / "celerybeat-schedule")])
    try:
        beat.wait_for_log("beat: Starting")
        yield beat
    finally:
        beat.stop()


def flush_redis(url: str) -> None:
    """FLUSHDB on the worker's own Redis database (never FLUSHALL: Redis is shared)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        if os.environ.get("MECC_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is not reachable at {url}: {exc}")
        pytest.skip(f"Redis is not reachable at {url}: {exc}")
    finally:
        client.close()


def wait_for(probe: Callable[[], T | None], worker: CeleryProcess, what: str,
             timeout: float = 30.0) -> T:
    """Poll `probe` until it returns something; fail early if the worker died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        if not worker.alive():
            pytest.fail(f"the worker died while waiting for {what}:\n{worker.tail()}")
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {timeout:.0f} s. Worker log:\n{worker.tail()}")
