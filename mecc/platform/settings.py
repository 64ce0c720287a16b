"""Settings read from MECC_* environment variables, with working defaults.

Read once per process, by `Settings.from_env` in create_app (the API and the worker) and in the
CLI; nothing else in mecc/ reads the environment. Nothing here connects to anything; secrets
that are not set are generated into var/ on first use (never committed) so that a fresh clone
runs with no configuration.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Redis hands an unacknowledged task to another worker after this long; every task time limit
# stays below it so that a task still running is never handed out twice.
BROKER_VISIBILITY_TIMEOUT = 300


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed` (the first when unset)."""
    raw = (env.get(name) or allowed[0]).strip().lower()
    if raw not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def _queue_name(env: Mapping[str, str], name: str, default: str) -> str:
    raw = (env.get(name) or default).strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", raw) or raw == "celery":
        raise SettingsError(f"{name} must be a queue name (letters, digits, _ . -) other than "
                            f"'celery', got {raw!r}")
    return raw


def _secret(env: Mapping[str, str], name: str, var_dir: Path) -> str:
    """The secret from the environment, else one generated once into var/<name>."""
    if env.get(name):
        return env[name]
    path = var_dir / name.lower()
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting together agree on one secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/mecc.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = ""  # empty: same as redis_url
    port: int = 8000
    secret_key: str = ""
    pseudonym_key: str = ""
    config_dir: str = str(ROOT / "config")
    var_dir: str = str(ROOT / "var")
    max_prompts_per_contact: int = 3
    max_body_bytes: int = 1_048_576  # 1 MiB: a batch of 500 events fits
    log_level: str = "INFO"
    # The URL clients call us at, when a proxy stands in front (CDS Hooks JWT `aud`).
    public_url: str = ""
    # Per API key, counted across all API processes; "off" disables (benchmarks).
    rate_limit: str = "6000 per minute"
    # "required": a rule version goes live (or is retired) only when a second identity with
    # rules:approve approves the request; "off": publishing acts at once.
    publish_approval: str = "required"
    # A claimed event not finished within its lease may be claimed again (its worker died).
    # Longer than the task hard time limit, so a live worker is never overtaken (checked in
    # __post_init__). Fault runs shorten both so that recovery is seen sooner.
    evaluation_lease_seconds: int = 90
    task_time_limit: int = 60
    # Where the webhook retry backoff starts. The fault suite (bench/faults.py, scenario f)
    # sets 1 s to watch a receiver fail and recover within a minute; production leaves it.
    webhook_base_delay_seconds: int = 5
    # Live push: a stream token's life (the screen renews it before it ends), how long
    # renewals go on after the first token (a shift), and the idle heartbeat.
    stream_token_seconds: int = 900
    stream_session_seconds: int = 43_200
    stream_heartbeat_seconds: float = 15.0
    # gunicorn (mecc/platform/gunicorn_conf.py): why gevent is the default is said there.
    gunicorn_worker_class: str = "gevent"
    gunicorn_worker_connections: int = 4000
    gunicorn_threads: int = 16
    # OpenID Connect sign-in for the pages (off while the issuer is empty); the role claim
    # may be a dotted path into nested claims (Keycloak: realm_access.roles).
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_role_claim: str = "roles"
    # Reports: in groupings by a person attribute a count from 1 to report_min_cell - 1 is
    # hidden (0 turns small-number suppression off). A rule is flagged for alert fatigue at
    # this override rate once it has at least fatigue_min_prompts pushed prompts.
    report_min_cell: int = 5
    fatigue_override_rate: float = 0.7
    fatigue_min_prompts: int = 20
    # person.display is erased this long after the contact (hours; fractions allowed, so that
    # a test can watch it go).
    display_retention_hours: float = 24.0
    # `mecc run` binds the API here: this machine only (docker-compose binds 0.0.0.0 in the
    # container, behind its own port mapping).
    host: str = "127.0.0.1"
    # Failed authentication (a key, JWT or stream token presented and refused) per client
    # address, across all API processes: each try costs a database lookup. "off" disables.
    auth_failure_limit: str = "30 per minute"
    # Back-tests run from their own queue, so that a pile of them never delays evaluation
    # (`mecc run` starts a worker for it; `celery worker -Q celery` takes everything else),
    # and one key may have at most this many queued or running at once (429 beyond).
    backtest_queue: str = "backtests"
    backtest_max_active_per_key: int = 2
    # CDS Hooks: a client's JWT `aud` must equal MECC_PUBLIC_URL + the path called. Without
    # MECC_PUBLIC_URL, JWTs are refused, unless this development switch lets the URL be built
    # from the request's Host header (which the caller controls).
    cds_audience_from_host: bool = False
    # RabbitMQ only (MECC_BROKER_URL=amqp://...; mecc/platform/queues.py): a message delivered
    # this many times without an acknowledgement is dead-lettered and its events failed with
    # the reason (at least the relay's MAX_ATTEMPTS, so a worker killed now and then fails
    # nothing); and the AMQP heartbeat, which finds a dead connection within about twice it.
    broker_delivery_limit: int = 10
    broker_heartbeat_seconds: int = 20

    def __post_init__(self) -> None:
        # Runs for overrides too (dataclasses.replace builds a new instance).
        if self.evaluation_lease_seconds <= self.task_time_limit:
            raise SettingsError(
                f"MECC_EVALUATION_LEASE_SECONDS ({self.evaluation_lease_seconds}) must be "
                f"longer than the task time limit MECC_TASK_TIME_LIMIT ({self.task_time_limit})")
        if self.oidc_issuer and not self.oidc_client_id:
            raise SettingsError("MECC_OIDC_ISSUER is set: MECC_OIDC_CLIENT_ID is needed too")

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def evaluation_lease(self) -> timedelta:
        return timedelta(seconds=self.evaluation_lease_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        var_dir = Path(env.get("MECC_VAR_DIR") or ROOT / "var")
        database_url = env.get("MECC_DATABASE_URL") or f"sqlite:///{var_dir / 'mecc.db'}"
        if not database_url.startswith(("sqlite:", "postgresql")):
            raise SettingsError("MECC_DATABASE_URL must be a sqlite:// or postgresql:// URL")
        if database_url.startswith("postgresql://"):
            # psycopg 3 is the driver we ship.
            database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
        level = env.get("MECC_LOG_LEVEL", "INFO").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError("MECC_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        return cls(
            database_url=database_url,
            redis_url=env.get("MECC_REDIS_URL") or cls.redis_url,
            broker_url=env.get("MECC_BROKER_URL") or "",
            port=_int(env, "MECC_PORT", 8000, 1, 65535),
            secret_key=_secret(env, "MECC_SECRET_KEY", var_dir),
            pseudonym_key=_secret(env, "MECC_PSEUDONYM_KEY", var_dir),
            config_dir=env.get("MECC_CONFIG_DIR") or str(ROOT / "config"),
            var_dir=str(var_dir),
            max_prompts_per_contact=_int(env, "MECC_MAX_PROMPTS_PER_CONTACT", 3, 1, 20),
            max_body_bytes=_int(env, "MECC_MAX_BODY_BYTES", 1_048_576, 1024, 64 * 1_048_576),
            log_level=level,
            rate_limit=env.get("MECC_RATE_LIMIT") or cls.rate_limit,
            public_url=(env.get("MECC_PUBLIC_URL") or "").rstrip("/"),
            publish_approval=_choice(env, "MECC_PUBLISH_APPROVAL", ("required", "off")),
            evaluation_lease_seconds=_int(env, "MECC_EVALUATION_LEASE_SECONDS", 90, 2, 3600),
            task_time_limit=_int(env, "MECC_TASK_TIME_LIMIT", 60, 1,
                                 BROKER_VISIBILITY_TIMEOUT - 1),
            webhook_base_delay_seconds=_int(env, "MECC_WEBHOOK_BASE_DELAY_SECONDS", 5, 1, 3600),
            stream_token_seconds=int(_float(env, "MECC_STREAM_TOKEN_SECONDS", 900, 5, 86_400)),
            stream_session_seconds=int(_float(env, "MECC_STREAM_SESSION_SECONDS", 43_200, 60,
                                              7 * 86_400)),
            stream_heartbeat_seconds=_float(env, "MECC_STREAM_HEARTBEAT_SECONDS", 15.0, 0.1,
                                            300.0),
            gunicorn_worker_class=env.get("MECC_GUNICORN_WORKER_CLASS") or "gevent",
            gunicorn_worker_connections=_int(env, "MECC_GUNICORN_WORKER_CONNECTIONS", 4000, 1,
                                             1_000_000),
            gunicorn_threads=_int(env, "MECC_GUNICORN_THREADS", 16, 1, 10_000),
            oidc_issuer=(env.get("MECC_OIDC_ISSUER") or "").rstrip("/"),
            oidc_client_id=env.get("MECC_OIDC_CLIENT_ID") or "",
            oidc_client_secret=env.get("MECC_OIDC_CLIENT_SECRET") or "",
            oidc_role_claim=env.get("MECC_OIDC_ROLE_CLAIM") or cls.oidc_role_claim,
            report_min_cell=_int(env, "MECC_REPORT_MIN_CELL", 5, 0, 1000),
            fatigue_override_rate=_float(env, "MECC_FATIGUE_OVERRIDE_RATE", 0.7, 0.0, 1.0),
            fatigue_min_prompts=_int(env, "MECC_FATIGUE_MIN_PROMPTS", 20, 1, 1_000_000),
            display_retention_hours=_float(env, "MECC_DISPLAY_RETENTION_HOURS", 24.0, 0.001,
                                           24.0 * 366),
            host=env.get("MECC_HOST") or cls.host,
            auth_failure_limit=env.get("MECC_AUTH_FAILURE_LIMIT") or cls.auth_failure_limit,
            backtest_queue=_queue_name(env, "MECC_BACKTEST_QUEUE", cls.backtest_queue),
            backtest_max_active_per_key=_int(env, "MECC_BACKTEST_MAX_ACTIVE_PER_KEY", 2, 1,
                                             1000),
            cds_audience_from_host=_choice(env, "MECC_CDS_AUDIENCE_FROM_HOST",
                                           ("off", "on")) == "on",
            broker_delivery_limit=_int(env, "MECC_BROKER_DELIVERY_LIMIT", 10, 5, 1000),
            broker_heartbeat_seconds=_int(env, "MECC_BROKER_HEARTBEAT_SECONDS", 20, 0, 600),
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        names = {f.name for f in fields(self)}
        unknown = set(overrides) - names
        if unknown:
            raise SettingsError(f"unknown settings {sorted(unknown)}")
        return replace(self, **overrides)
