"""The stack under fault: our own Redis and PostgreSQL (and a RabbitMQ virtual host when that
is the broker), then the API, a worker and beat."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from bench.faults.plan import LEASE_SECONDS, TASK_TIME_LIMIT
from tests.support import rabbitmq
from tests.support.processes import Proc, free_port, start_api, start_beat, start_worker
from tests.support.servers import OwnPostgres, OwnRedis
from tests.support.stack import create_key, seed, service_env


class Stack:
    """Our Redis and PostgreSQL, then API, worker and beat, with the shortened lease."""

    def __init__(self, workdir: Path, broker: str = "redis") -> None:
        self.workdir = workdir
        # "redis": our own Redis is the broker too; "rabbitmq": a virtual host of our own on
        # the machine's RabbitMQ (tests/support/rabbitmq.py), pub/sub staying on our Redis.
        self.broker = broker
        self.broker_url = ""
        self.redis = OwnRedis(_port(6390), workdir / "redis")
        self.pg = OwnPostgres(_port(5440), Path(tempfile.mkdtemp(prefix="mecc-pg-")))
        self.api_port = free_port()
        self.env: dict[str, str] = {}
        self.api: Proc | None = None
        self.worker: Proc | None = None
        self.beat: Proc | None = None
        self.key = ""
        self.database_url = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        self.redis.start()
        self.pg.start()
        self.database_url = self.pg.create_database("mecc_faults")
        extra = {}
        if self.broker == "rabbitmq":
            self.broker_url = rabbitmq.create_vhost("mecc-faults")
            extra["MECC_BROKER_URL"] = self.broker_url
        self.env = service_env(
            self.database_url, self.redis.url(0), self.workdir / "var",
            MECC_PORT=str(self.api_port), MECC_EVALUATION_LEASE_SECONDS=str(LEASE_SECONDS),
            MECC_TASK_TIME_LIMIT=str(TASK_TIME_LIMIT), MECC_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1", **extra)
        seed(self.env)
        self.key = create_key(self.env).key
        self.api = start_api(self.env, self.workdir, port=self.api_port, workers=2)
        self.start_worker()
        self.beat = start_beat(self.env, self.workdir)

    def start_worker(self, **extra: str) -> None:
        self.worker = start_worker({**self.env, **extra}, self.workdir, concurrency=2)

    def restart_worker(self, **extra: str) -> None:
        """Stop the worker gently and start it again with `extra` added to its environment."""
        if self.worker is not None:
            self.worker.stop()
        self.start_worker(**extra)

    def restart_beat(self, **extra: str) -> None:
        """The same for beat: a task message carries the time limits of the process that sent
        it, so the sweeps beat sends run under beat's settings, not the worker's."""
        if self.beat is not None:
            self.beat.stop()
        self.beat = start_beat({**self.env, **extra}, self.workdir)

    def check_alive(self) -> list[str]:
        """Names of processes that died on their own (a finding in itself)."""
        procs = {"api": self.api, "worker": self.worker, "beat": self.beat}
        return [name for name, proc in procs.items() if proc is None or not proc.alive()]

    def stop(self) -> None:
        for proc in (self.beat, self.worker, self.api):
            if proc is not None:
                proc.stop()
        self.redis.stop()
        self.pg.destroy()
        if self.broker_url:
            rabbitmq.delete_vhost(self.broker_url)


def _port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()
