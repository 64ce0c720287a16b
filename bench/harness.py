"""Real processes for fault runs and benchmarks, all children of the calling script.

Our own Redis and PostgreSQL (never the machine's: faults stop and wipe them), the API under
gunicorn, a Celery worker and Celery beat, each started as `make run` starts them and stopped
by its own pid. Everything listens on 127.0.0.1 only.

The API is small on purpose; bench/*.py may import it (`sys.path` holds bench/ when a script
there runs, so `import harness`):

    free_port() -> int
    wait_until(predicate, timeout, what)          poll until true, else TimeoutError
    OwnRedis(port, workdir)                       .start() .kill() .restart() .url(db) .flushdb(db)
    OwnPostgres(port, workdir)                    .start() .stop() .create_database(name) -> url
    service_env(database_url, redis_url, var_dir, **extra) -> env for every mecc process
    seed(env)                                     `mecc seed`: migrate, rules, services
    create_key(env, organisation, scopes) -> str  `mecc keys create --json`
    Proc(name, argv, env, log_dir)                .pid .alive() .children() .stop() .kill_all()
    start_api(env, port, log_dir) -> Proc         gunicorn with mecc.platform.gunicorn_conf, /healthz up
    start_worker(env, log_dir) -> Proc            `celery -A mecc.worker worker`, ready
    start_beat(env, log_dir) -> Proc              `celery -A mecc.worker beat` (the relay)
    child_pids(pid) -> list[int]                  direct children, read from /proc
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MECC = str(Path(PYTHON).with_name("mecc"))
PG_BIN = Path(os.environ.get("MECC_PG_BIN", "/usr/lib/postgresql/15/bin"))
DEFAULT_SCOPES = ("events:write", "prompts:read", "prompts:write")


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
            raw = (task / "children").read_text().split()
            found.extend(int(p) for p in raw)
    except OSError:
        return []
    return sorted(set(found))


# ---------------------------------------------------------------------------------- processes


class Proc:
    """A child process logging to a file, stopped by its own pid (and its children's)."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str],
                 log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(self.argv, env=dict(env), cwd=ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def children(self) -> list[int]:
        return child_pids(self.pid) if self.alive() else []

    def log_text(self, since: int = 0) -> str:
        """The log from byte offset `since` (the file is appended to across restarts)."""
        try:
            return self.log_path.read_bytes()[since:].decode(errors="replace")
        except OSError:
            return ""

    def kill_all(self) -> list[int]:
        """SIGKILL the children, then the process itself (a crash, not a shutdown)."""
        killed = []
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            killed.append(self.pid)
        self.popen.wait(timeout=10)
        self._log.close()
        return killed

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM and wait; SIGKILL (children too) after `grace` seconds."""
        if self.alive():
            children = self.children()
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.send_signal(signal.SIGKILL)
                self.popen.wait(timeout=10)
            for pid in children:  # orphans left behind by a hard stop
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------- Redis


class OwnRedis:
    """A redis-server of our own (no persistence): safe to kill, restart and FLUSHDB."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = Path(workdir)
        self.proc: Proc | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> OwnRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = Proc(f"redis-{self.port}", [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--save", "", "--appendonly", "no", "--daemonize", "no"], os.environ, self.workdir)
        wait_until(self.answers, 10, f"redis on port {self.port}", 0.05)
        return self

    def answers(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url(), socket_connect_timeout=0.5,
                                      socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """Crash it (SIGKILL): without persistence everything it held is gone."""
        if self.proc is not None:
            self.proc.kill_all()
            self.proc = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def flushdb(self, db: int) -> None:
        import redis

        client = redis.Redis.from_url(self.url(db), socket_connect_timeout=2)
        try:
            client.flushdb()
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace=5)
            self.proc = None


# ---------------------------------------------------------------------------------- PostgreSQL


class OwnPostgres:
    """A PostgreSQL cluster of our own in a temporary directory (trust auth, 127.0.0.1 only).

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` user and
    its commands run through `runuser`.
    """

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = Path(workdir)
        self.data = self.workdir / "data"
        self.logfile = self.workdir / "postgres.log"
        self._as_root = os.geteuid() == 0

    @property
    def admin_dsn(self) -> str:
        return (f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres "
                "connect_timeout=3")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=True)

    def init(self) -> OwnPostgres:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            shutil.chown(self.workdir, "postgres", "postgres")
            # The postgres user must be able to reach its directory (mkdtemp makes 0700 dirs).
            for parent in self.workdir.parents:
                info = parent.stat()
                if info.st_uid == os.geteuid() and not info.st_mode & 0o001:
                    parent.chmod(info.st_mode | 0o011)
        if not (self.data / "PG_VERSION").exists():
            self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                      "postgres", "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> OwnPostgres:
        if not (self.data / "PG_VERSION").exists():
            self.init()
        options = (f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off "
                   "-c max_connections=200")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
                  "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster (`fast` ends every connection, as an outage does)."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t",
                      "60", "stop")

    def answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.admin_dsn, connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        """Drop and re-create `name` in our own cluster; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------- mecc


def service_env(database_url: str, redis_url: str, var_dir: Path, *, port: int = 8000,
                **extra: str) -> dict[str, str]:
    """The environment every mecc process of one stack shares (same secrets, same var dir)."""
    var_dir = Path(var_dir)
    prom = var_dir / "prometheus"
    prom.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "MECC_DATABASE_URL": database_url,
        "MECC_REDIS_URL": redis_url,
        "MECC_PORT": str(port),
        "MECC_VAR_DIR": str(var_dir),
        "MECC_SECRET_KEY": "harness-secret-key",
        "MECC_PSEUDONYM_KEY": "harness-pseudonym-key",
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("MECC_BROKER_URL", None)
    env.update(extra)
    return env


def seed(env: Mapping[str, str]) -> None:
    """Migrate and load the default rule pack and services, as `make run` does."""
    subprocess.run([MECC, "seed"], env=dict(env), check=True, capture_output=True, timeout=180)


def create_key(env: Mapping[str, str], organisation: str = "*",
               scopes: Sequence[str] = DEFAULT_SCOPES) -> str:
    argv = [MECC, "keys", "create", "--json", "--name", f"harness-{uuid.uuid4().hex[:6]}",
            "--organisation", organisation]
    for scope in scopes:
        argv += ["--scope", scope]
    out = subprocess.run(argv, env=dict(env), check=True, capture_output=True, text=True,
                         timeout=60)
    return str(json.loads(out.stdout.strip().splitlines()[-1])["key"])


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our 127.0.0.1
            return bool(answer.status == 200)
    except OSError:
        return False


def start_api(env: Mapping[str, str], port: int, log_dir: Path, *, workers: int = 2,
              name: str = "api", timeout: float = 60) -> Proc:
    """gunicorn serving mecc.api:create_app() with mecc.platform.gunicorn_conf; returns once /healthz."""
    proc = Proc(name, [PYTHON, "-m", "gunicorn", "--config", "python:mecc.platform.gunicorn_conf",
                       "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                       "mecc.api:create_app()"], env, log_dir)
    _wait_alive(proc, lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), timeout)
    return proc


def start_worker(env: Mapping[str, str], log_dir: Path, *, concurrency: int = 2,
                 name: str = "worker", timeout: float = 60) -> Proc:
    """`celery -A mecc.worker worker` (prefork); returns once it logged that it is ready."""
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@%h"
    start = _log_size(log_dir, name)  # the log file is appended to across restarts
    proc = Proc(name, [PYTHON, "-m", "celery", "-A", "mecc.worker", "worker", "--loglevel",
                       "INFO", "--concurrency", str(concurrency), "--without-gossip",
                       "--without-mingle", "--hostname", hostname], env, log_dir)
    _wait_alive(proc, lambda: " ready." in proc.log_text(start), timeout)
    return proc


def start_beat(env: Mapping[str, str], log_dir: Path, *, name: str = "beat") -> Proc:
    """`celery -A mecc.worker beat`: sends the relay task every few seconds."""
    schedule = Path(env.get("MECC_VAR_DIR", str(log_dir))) / f"celerybeat-{name}"
    start = _log_size(log_dir, name)
    proc = Proc(name, [PYTHON, "-m", "celery", "-A", "mecc.worker", "beat", "--loglevel",
                       "INFO", "--schedule", str(schedule)], env, log_dir)
    _wait_alive(proc, lambda: "beat: Starting" in proc.log_text(start), 60)
    return proc


def _log_size(log_dir: Path, name: str) -> int:
    try:
        return (Path(log_dir) / f"{name}.log").stat().st_size
    except OSError:
        return 0


def _wait_alive(proc: Proc, ready: Callable[[], bool], timeout: float) -> None:
    def check() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; "
                               f"see {proc.log_path}")
        return ready()

    try:
        wait_until(check, timeout, f"{proc.name} ready", 0.1)
    except BaseException:
        proc.stop(grace=5)
        raise
