"""Back-tests on a queue of their own (issue 13, finding 8): a pile of them never delays
evaluation, in `mecc run` or in docker-compose."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mecc.platform import task_names
from mecc.platform.celery_app import DEFAULT_QUEUE, celery_config
from mecc.platform.settings import Settings, SettingsError
from mecc.platform.supervisor import _commands
from tests.support import ROOT


def queues_of(command: list[str]) -> list[str]:
    return command[command.index("--queues") + 1].split(",")


def test_backtests_are_routed_to_their_own_queue() -> None:
    from celery import Celery

    settings = Settings(backtest_queue="slow-lane")
    app = Celery("routing-test")
    app.config_from_object(celery_config(settings))
    router = app.amqp.router
    assert router.route({}, task_names.RUN_BACKTEST)["queue"].name == "slow-lane"
    for name in (task_names.EVALUATE_EVENTS, task_names.DELIVER_WEBHOOKS,
                 task_names.RELAY_EVENTS):
        assert router.route({}, name)["queue"].name == DEFAULT_QUEUE


def test_mecc_run_gives_backtests_a_worker_of_their_own(tmp_path: Path) -> None:
    commands = _commands(Settings(port=8123), web_workers=2, concurrency=2, var=tmp_path)
    assert queues_of(commands["worker"]) == [DEFAULT_QUEUE]
    assert queues_of(commands["backtest-worker"]) == ["backtests"]
    assert "127.0.0.1:8123" in commands["api"]  # this machine only under make run


def test_compose_runs_backtests_apart_from_evaluation() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert queues_of(services["worker"]["command"]) == [DEFAULT_QUEUE]
    assert queues_of(services["backtest-worker"]["command"]) == ["backtests"]


SECRETS = {"MECC_SECRET_KEY": "s", "MECC_PSEUDONYM_KEY": "p"}


@pytest.mark.parametrize("name", ["celery", "two words"])
def test_the_backtest_queue_must_be_a_queue_of_its_own(name: str) -> None:
    assert Settings.from_env(SECRETS).backtest_queue == "backtests"
    with pytest.raises(SettingsError):
        Settings.from_env({**SECRETS, "MECC_BACKTEST_QUEUE": name})
