"""What a stack of mecc processes shares: its environment, a database, a Redis database, the
default rules, API keys. Made the way an operator makes them (`mecc seed`, `mecc keys create`).

Redis is shared with everything else on the machine, so each kind of test and benchmark has a
database of its own (listed here, in one place) and only ever FLUSHDBs that one.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from tests.support import ROOT
from tests.support.processes import MECC

REDIS = "redis://127.0.0.1:6379"


def _redis_url(variable: str, db: int) -> str:
    return os.environ.get(variable) or f"{REDIS}/{db}"


# In-process apps (tests/conftest.py's `redis_url`, flushed before every test that asks).
TEST_REDIS_URL = _redis_url("MECC_TEST_REDIS_URL", 13)
# A real Celery worker for an in-process app (tests.support.workers), so that other tests'
# stray messages never reach it.
WORKER_REDIS_URL = _redis_url("MECC_TEST_WORKER_REDIS_URL", 12)
STREAM_REDIS_URL = _redis_url("MECC_TEST_STREAM_REDIS_URL", 10)  # live push and browser tests
WEBHOOK_REDIS_URL = _redis_url("MECC_TEST_WEBHOOK_REDIS_URL", 9)
BACKTEST_REDIS_URL = _redis_url("MECC_TEST_BACKTEST_REDIS_URL", 8)
# bench/ingest, pipeline, cds (MECC_BENCH_REDIS_URL: another Redis, for a second run at once)
BENCH_REDIS_URL = os.environ.get("MECC_BENCH_REDIS_URL") or f"{REDIS}/14"
PUSH_BENCH_REDIS_URL = f"{REDIS}/15"  # bench/push: not the stream tests' database

PG_ADMIN_DSN = os.environ.get("MECC_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres "
                              "dbname=postgres connect_timeout=3")
# The harness drops only databases it names itself.
OWN_DATABASE_PREFIXES = ("mecc_test", "mecc_bench")
SECRET_KEY = "harness-secret-key"
PSEUDONYM_KEY = "harness-pseudonym-key"
DEFAULT_SCOPES = ("events:write", "prompts:read", "prompts:write")
REQUIRE_SERVICES = os.environ.get("MECC_REQUIRE_SERVICES") == "1"


def unavailable(what: str, exc: BaseException) -> NoReturn:
    """Skip the test because a service is missing, or fail it under MECC_REQUIRE_SERVICES=1
    (CI, where a missing service is a broken machine, not a reason to skip)."""
    import pytest

    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if REQUIRE_SERVICES:
        pytest.fail(message + "; MECC_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(message)


# ---------------------------------------------------------------------------------- Redis


def flush_redis(url: str) -> None:
    """FLUSHDB on this one database (never FLUSHALL: Redis is shared); redis.RedisError if
    Redis does not answer."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


def flush_redis_or_skip(url: str) -> str:
    """flush_redis for a test: a Redis that does not answer skips it (or fails it in CI)."""
    import redis

    try:
        flush_redis(url)
    except redis.RedisError as exc:
        unavailable(f"Redis at {url}", exc)
    return url


# ---------------------------------------------------------------------------------- databases


@dataclass(frozen=True)
class TempDatabase:
    url: str
    drop: Callable[[], None]


def pg_url(name: str, admin_dsn: str = PG_ADMIN_DSN) -> str:
    """The SQLAlchemy URL of database `name` on the server `admin_dsn` points at."""
    params = dict(p.split("=", 1) for p in admin_dsn.split())
    return (f"postgresql+psycopg://{params.get('user', 'postgres')}@"
            f"{params.get('host', '127.0.0.1')}:{params.get('port', '5432')}/{name}")


def new_database(kind: str, directory: Path, *, prefix: str = "mecc_test",
                 name: str | None = None, migrate: bool = True) -> TempDatabase:
    """A fresh database: a SQLite file under `directory`, or a PostgreSQL database named
    `name` (dropped first if it exists) or `<prefix>_<pid>_<random>`; migrated unless
    `migrate` is false (`mecc seed` migrates too). drop() removes it."""
    if kind == "sqlite":
        path = Path(directory) / f"{name or prefix}.db"
        url = f"sqlite:///{path}"
    elif kind == "postgresql":
        import psycopg

        name = name or f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        if not name.startswith(OWN_DATABASE_PREFIXES):
            raise ValueError(f"the harness only drops databases named {OWN_DATABASE_PREFIXES}")
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        url = pg_url(name)
    else:
        raise ValueError(f"unknown database kind {kind!r}")
    if migrate:
        from mecc.store.migrate import upgrade

        upgrade(url)
    return TempDatabase(url, lambda: drop_database(url))


def drop_database(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    if not name.startswith(OWN_DATABASE_PREFIXES):
        raise ValueError(f"the harness only drops databases named {OWN_DATABASE_PREFIXES}")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------------- processes


def service_env(database_url: str, redis_url: str, var_dir: Path, *,
                secret_key: str = SECRET_KEY, pseudonym_key: str = PSEUDONYM_KEY,
                **extra: str) -> dict[str, str]:
    """The environment every mecc process of one stack shares: the same database, Redis,
    secrets and var directory, and one metrics directory (as `mecc run` gives them)."""
    var_dir = Path(var_dir)
    metrics = var_dir / "prometheus"
    metrics.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "MECC_DATABASE_URL": database_url,
        "MECC_REDIS_URL": redis_url,
        "MECC_VAR_DIR": str(var_dir),
        "MECC_SECRET_KEY": secret_key,
        "MECC_PSEUDONYM_KEY": pseudonym_key,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        # bench/bare_app.py and bench/noop_tasks.py are imported by gunicorn and Celery.
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("MECC_BROKER_URL", None)  # the broker is the stack's Redis
    env.update(extra)
    return env


def mecc_cli(env: Mapping[str, str], *args: str, timeout: float = 180) -> str:
    """Run the `mecc` command; its standard output, or RuntimeError with what it said."""
    done = subprocess.run([MECC, *args], env=dict(env), capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"mecc {' '.join(args)} exited with {done.returncode}:\n"
                           f"{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return done.stdout


def seed(env: Mapping[str, str]) -> None:
    """Migrate and load the default rule pack and services, as `make run` does."""
    mecc_cli(env, "seed")


@dataclass(frozen=True)
class Key:
    id: str
    key: str
    webhook_secret: str


def create_key(env: Mapping[str, str], organisation: str = "*",
               scopes: Sequence[str] = DEFAULT_SCOPES, *, callback_hosts: Sequence[str] = (),
               name: str | None = None) -> Key:
    """`mecc keys create --json`, as an administrator makes a key."""
    argv = ["keys", "create", "--json", "--name", name or f"harness-{uuid.uuid4().hex[:6]}",
            "--organisation", organisation]
    argv += [a for scope in scopes for a in ("--scope", scope)]
    argv += [a for host in callback_hosts for a in ("--callback-host", host)]
    created = json.loads(mecc_cli(env, *argv, timeout=60).strip().splitlines()[-1])
    return Key(str(created["id"]), str(created["key"]), str(created["webhook_secret"]))
