"""Settings from MECC_* variables: working defaults, strict parsing, secrets made once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mecc.platform.settings import Settings, SettingsError


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"MECC_VAR_DIR": str(tmp_path / "var"), **values}


def test_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(env(tmp_path))
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'mecc.db'}"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.effective_broker_url == settings.redis_url
    assert settings.port == 8000
    assert settings.max_body_bytes == 1_048_576
    assert settings.max_prompts_per_contact == 3
    assert settings.log_level == "INFO"
    assert Path(settings.config_dir, "facts.yaml").exists()
    assert (settings.evaluation_lease_seconds, settings.task_time_limit) == (90, 60)
    assert settings.webhook_base_delay_seconds == 5
    assert (settings.stream_token_seconds, settings.stream_session_seconds,
            settings.stream_heartbeat_seconds) == (900, 43_200, 15.0)
    assert settings.gunicorn_worker_class == "gevent"


def test_the_class_defaults_match_the_contract() -> None:
    assert Settings.database_url == "sqlite:///var/mecc.db"
    assert Settings.redis_url == "redis://127.0.0.1:6379/0"
    assert Settings.port == 8000


def test_values_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(env(
        tmp_path, MECC_REDIS_URL="redis://127.0.0.1:6379/3",
        MECC_BROKER_URL="redis://127.0.0.1:6379/4", MECC_PORT="8123",
        MECC_LOG_LEVEL="debug", MECC_MAX_PROMPTS_PER_CONTACT="5",
        MECC_DATABASE_URL="sqlite:////tmp/other.db"))
    assert settings.redis_url == "redis://127.0.0.1:6379/3"
    assert settings.effective_broker_url == "redis://127.0.0.1:6379/4"
    assert settings.port == 8123
    assert settings.log_level == "DEBUG"
    assert settings.max_prompts_per_contact == 5
    assert settings.database_url == "sqlite:////tmp/other.db"


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-1", "80.5", "8000x"])
def test_a_bad_port_is_a_settings_error(tmp_path: Path, port: str) -> None:
    with pytest.raises(SettingsError, match="MECC_PORT"):
        Settings.from_env(env(tmp_path, MECC_PORT=port))


def test_an_empty_port_means_the_default(tmp_path: Path) -> None:
    assert Settings.from_env(env(tmp_path, MECC_PORT="")).port == 8000


@pytest.mark.parametrize(("name", "value"), [("MECC_LOG_LEVEL", "LOUD"),
                                             ("MECC_DATABASE_URL", "mysql://x/y"),
                                             ("MECC_MAX_PROMPTS_PER_CONTACT", "0"),
                                             ("MECC_MAX_BODY_BYTES", "10")])
def test_other_bad_values_are_settings_errors_naming_the_variable(tmp_path: Path, name: str,
                                                                  value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env(tmp_path, **{name: value}))


@pytest.mark.parametrize(("given", "used"), [
    ("postgresql://postgres@127.0.0.1:5432/mecc",
     "postgresql+psycopg://postgres@127.0.0.1:5432/mecc"),
    ("postgresql+psycopg://postgres@127.0.0.1/mecc",
     "postgresql+psycopg://postgres@127.0.0.1/mecc"),
])
def test_postgresql_urls_use_psycopg_3(tmp_path: Path, given: str, used: str) -> None:
    assert Settings.from_env(env(tmp_path, MECC_DATABASE_URL=given)).database_url == used


def test_secrets_are_generated_once_private_and_stable(tmp_path: Path) -> None:
    first = Settings.from_env(env(tmp_path))
    second = Settings.from_env(env(tmp_path))

    var = tmp_path / "var"
    for name, value in (("mecc_secret_key", first.secret_key),
                        ("mecc_pseudonym_key", first.pseudonym_key)):
        path = var / name
        assert path.read_text().strip() == value
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert len(value) >= 32
    assert (second.secret_key, second.pseudonym_key) == (first.secret_key, first.pseudonym_key)
    assert first.secret_key != first.pseudonym_key


def test_secrets_from_the_environment_win_and_are_not_written(tmp_path: Path) -> None:
    settings = Settings.from_env(env(tmp_path, MECC_SECRET_KEY="s3", MECC_PSEUDONYM_KEY="p3"))
    assert (settings.secret_key, settings.pseudonym_key) == ("s3", "p3")
    assert not (tmp_path / "var" / "mecc_secret_key").exists()
    assert not (tmp_path / "var" / "mecc_pseudonym_key").exists()


def test_two_var_dirs_get_different_secrets(tmp_path: Path) -> None:
    one = Settings.from_env({"MECC_VAR_DIR": str(tmp_path / "one")})
    two = Settings.from_env({"MECC_VAR_DIR": str(tmp_path / "two")})
    assert one.pseudonym_key != two.pseudonym_key


def test_overrides(tmp_path: Path) -> None:
    settings = Settings.from_env(env(tmp_path)).with_overrides({"port": 9000})
    assert settings.port == 9000
    with pytest.raises(SettingsError, match="nonsense"):
        settings.with_overrides({"nonsense": 1})


def test_the_bench_and_stream_knobs_come_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(env(
        tmp_path, MECC_EVALUATION_LEASE_SECONDS="20", MECC_TASK_TIME_LIMIT="10",
        MECC_WEBHOOK_BASE_DELAY_SECONDS="1", MECC_STREAM_TOKEN_SECONDS="60.5",
        MECC_STREAM_SESSION_SECONDS="600", MECC_STREAM_HEARTBEAT_SECONDS="0.5",
        MECC_GUNICORN_WORKER_CLASS="gthread", MECC_GUNICORN_THREADS="4"))
    assert settings.evaluation_lease.total_seconds() == 20
    assert settings.task_time_limit == 10
    assert settings.webhook_base_delay_seconds == 1
    assert (settings.stream_token_seconds, settings.stream_session_seconds,
            settings.stream_heartbeat_seconds) == (60, 600, 0.5)
    assert (settings.gunicorn_worker_class, settings.gunicorn_threads) == ("gthread", 4)


@pytest.mark.parametrize(("name", "value"), [("MECC_EVALUATION_LEASE_SECONDS", "1"),
                                             ("MECC_TASK_TIME_LIMIT", "300"),
                                             ("MECC_WEBHOOK_BASE_DELAY_SECONDS", "0"),
                                             ("MECC_STREAM_HEARTBEAT_SECONDS", "often"),
                                             ("MECC_STREAM_TOKEN_SECONDS", "1")])
def test_bad_knobs_are_settings_errors_naming_the_variable(tmp_path: Path, name: str,
                                                           value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env(tmp_path, **{name: value}))


@pytest.mark.parametrize(("lease", "limit"), [("60", "60"), ("30", "60"), ("90", "120")])
def test_the_lease_must_outlast_the_task_time_limit(tmp_path: Path, lease: str,
                                                    limit: str) -> None:
    # Otherwise a slow but live task could be overtaken by a second claim of its events.
    with pytest.raises(SettingsError, match="MECC_EVALUATION_LEASE_SECONDS.*MECC_TASK_TIME_LIMIT"):
        Settings.from_env(env(tmp_path, MECC_EVALUATION_LEASE_SECONDS=lease,
                              MECC_TASK_TIME_LIMIT=limit))
    with pytest.raises(SettingsError, match="longer than"):
        Settings.from_env(env(tmp_path)).with_overrides({"task_time_limit": 90})


def test_the_report_thresholds_come_from_the_environment(tmp_path: Path) -> None:
    defaults = Settings.from_env({"MECC_VAR_DIR": str(tmp_path)})
    assert (defaults.report_min_cell, defaults.fatigue_override_rate,
            defaults.fatigue_min_prompts) == (5, 0.7, 20)
    chosen = Settings.from_env({"MECC_VAR_DIR": str(tmp_path), "MECC_REPORT_MIN_CELL": "0",
                                "MECC_FATIGUE_OVERRIDE_RATE": "0.5",
                                "MECC_FATIGUE_MIN_PROMPTS": "50"})
    assert (chosen.report_min_cell, chosen.fatigue_override_rate,
            chosen.fatigue_min_prompts) == (0, 0.5, 50)
    for name, bad in (("MECC_REPORT_MIN_CELL", "-1"), ("MECC_FATIGUE_OVERRIDE_RATE", "1.5"),
                      ("MECC_FATIGUE_MIN_PROMPTS", "0"), ("MECC_REPORT_MIN_CELL", "five")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({"MECC_VAR_DIR": str(tmp_path), name: bad})
