"""A Redis and a PostgreSQL cluster of our own, for runs that crash, wipe and stop them
(bench/faults): never the machine's shared servers. 127.0.0.1 only, no persistence.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.processes import Proc, wait_until

PG_BIN = Path(os.environ.get("MECC_PG_BIN", "/usr/lib/postgresql/15/bin"))


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
