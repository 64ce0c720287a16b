"""Child processes of a test or benchmark: gunicorn, Celery worker and beat, redis-server.

Each child runs in a process group of its own (so the group can be stopped as a whole without
touching anything else), writes its output to `<log_dir>/<name>.log`, and is stopped by its own
id. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.support import ROOT

PYTHON = sys.executable
MECC = str(Path(PYTHON).with_name("mecc"))
API_APP = "mecc.api:create_app()"
READY_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.2) -> None:
    """Poll `predicate` until it is true; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc; no psutil here)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.extend(int(p) for p in (task / "children").read_text().split())
    except OSError:
        return []
    return sorted(set(found))


class Proc:
    """One child process, its log file, and how to stop it."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path,
                 *, port: int | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.log_path = Path(log_dir) / f"{name}.log"
        # The file is appended to when a process of the same name is started again (a restart
        # in a fault run), so "this process's log" starts at the current size.
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill_all()
        self.popen = subprocess.Popen(self.argv, env=dict(env), cwd=ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def base(self) -> str:
        """http://127.0.0.1:<port> of a server started with a port."""
        if self.port is None:
            raise ValueError(f"{self.name} was started without a port")
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def children(self) -> list[int]:
        return child_pids(self.pid) if self.alive() else []

    def log_text(self, since: int | None = None) -> str:
        """The log from byte offset `since` (default: where this process started writing)."""
        try:
            raw = self.log_path.read_bytes()
        except OSError:
            return ""
        return raw[self.log_start if since is None else since:].decode(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_ready(self, ready: Callable[[], bool], timeout: float = READY_SECONDS,
                   interval: float = 0.1) -> Proc:
        """Poll `ready` every `interval` seconds until true; RuntimeError with the log's tail
        if the process exits or does not get there in time (and then it is stopped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                self.stop(grace=5)
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n"
                                   f"{self.tail()}")
            if ready():
                return self
            time.sleep(interval)
        self.stop(grace=5)
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f} s:\n{self.tail()}")

    def wait_for_log(self, marker: str, timeout: float = READY_SECONDS) -> Proc:
        return self.wait_ready(lambda: marker in self.log_text(), timeout)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)  # our own group: the process and what it started
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the process (a warm shutdown: Celery finishes its current task, gunicorn
        its requests), SIGKILL to its group after `grace` seconds, and to any orphan left."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._signal_group(signal.SIGKILL)
        self._log.close()

    def kill_all(self) -> None:
        """SIGKILL the process and its children at once: a crash, not a shutdown."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our 127.0.0.1
            return bool(answer.status == 200)
    except OSError:
        return False


def start_api(env: Mapping[str, str], log_dir: Path, *, port: int | None = None,
              workers: int = 1, name: str = "api", app: str = API_APP,
              wait: bool = True, timeout: float = READY_SECONDS) -> Proc:
    """gunicorn with the API's own configuration (mecc.platform.gunicorn_conf), as `mecc run`
    starts it; returns once /healthz answers 200 (unless `wait` is false: then call
    `wait_healthy`). `app` may name another WSGI app on the same configuration."""
    port = port or free_port()
    proc = Proc(name, [PYTHON, "-m", "gunicorn", "--config", "python:mecc.platform.gunicorn_conf",
                       "--workers", str(workers), "--bind", f"127.0.0.1:{port}", app],
                env, log_dir, port=port)
    return wait_healthy(proc, timeout) if wait else proc


def wait_healthy(proc: Proc, timeout: float = READY_SECONDS) -> Proc:
    return proc.wait_ready(lambda: http_ok(f"{proc.base}/healthz"), timeout)


def start_worker(env: Mapping[str, str], log_dir: Path, *, concurrency: int = 1,
                 name: str = "worker", app: str = "mecc.worker", loglevel: str = "INFO",
                 wait: bool = True, timeout: float = READY_SECONDS) -> Proc:
    """`celery -A mecc.worker worker` (prefork) with the options `mecc run` gives it, returned
    once it logs that it is ready.

    With `wait=False` (or a loglevel above INFO, which hides the ready line) it returns at once:
    a benchmark that times a worker starting on a full queue wants exactly that.
    """
    hostname = f"{name}-{os.getpid()}-{uuid.uuid4().hex[:6]}@%h"
    proc = Proc(name, [PYTHON, "-m", "celery", "-A", app, "worker", "--loglevel", loglevel,
                       "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
                       "--hostname", hostname], env, log_dir)
    if wait and loglevel.upper() in ("DEBUG", "INFO"):
        proc.wait_for_log(" ready.", timeout)
    return proc


def start_beat(env: Mapping[str, str], log_dir: Path, *, name: str = "beat",
               timeout: float = READY_SECONDS) -> Proc:
    """`celery -A mecc.worker beat`, which sends the relay and the webhook sweep on schedule."""
    schedule = Path(log_dir) / f"celerybeat-{name}"
    proc = Proc(name, [PYTHON, "-m", "celery", "-A", "mecc.worker", "beat", "--loglevel",
                       "INFO", "--schedule", str(schedule)], env, log_dir)
    return proc.wait_for_log("beat: Starting", timeout)
