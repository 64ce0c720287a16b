"""Settings read from MECC_* environment variables, with working defaults.

Nothing here connects to anything; secrets that are not set are generated into var/ on first
use (never committed) so that a fresh clone runs with no configuration.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


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
    database_url: str = "sqlite:///var/mecc.platform.db"
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
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        var_dir = Path(env.get("MECC_VAR_DIR") or ROOT / "var")
        database_url = env.get("MECC_DATABASE_URL") or f"sqlite:///{var_dir / 'mecc.platform.db'}"
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
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        names = {f.name for f in fields(self)}
        unknown = set(overrides) - names
        if unknown:
            raise SettingsError(f"unknown settings {sorted(unknown)}")
        return replace(self, **overrides)
