"""The broker options chosen from MECC_BROKER_URL's scheme (CONTRACT.md, "Broker")."""

from __future__ import annotations

import pytest

from mecc.platform.celery_app import DEFAULT_QUEUE, celery_config
from mecc.platform.queues import DEAD_LETTER, QuorumQueue, is_amqp
from mecc.platform.settings import Settings, SettingsError

AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def _queues(config: dict) -> dict:
    return {q.name: q for q in config["task_queues"]}


def test_redis_stays_the_default_with_plain_queues_and_a_visibility_timeout() -> None:
    config = celery_config(Settings())
    assert config["broker_url"].startswith("redis://")
    assert config["broker_transport_options"]["visibility_timeout"] == 300
    assert "confirm_publish" not in config["broker_transport_options"]
    assert "broker_heartbeat" not in config
    for queue in _queues(config).values():
        assert not queue.queue_arguments
        assert not isinstance(queue, QuorumQueue)


def test_rabbitmq_work_queues_are_quorum_with_a_delivery_limit_and_a_dead_letter_queue() -> None:
    settings = Settings(broker_url=AMQP, backtest_queue="slow", broker_delivery_limit=7)
    queues = _queues(celery_config(settings))
    # Every queue a worker consumes, the back-test queue included.
    assert set(queues) == {DEFAULT_QUEUE, "slow"}
    for queue in queues.values():
        assert isinstance(queue, QuorumQueue)
        assert queue.durable
        assert queue.queue_arguments == {
            "x-queue-type": "quorum", "x-delivery-limit": 7,
            "x-dead-letter-exchange": DEAD_LETTER, "x-dead-letter-routing-key": DEAD_LETTER,
            "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        # Celery's native delayed delivery (retry countdowns) needs a topic exchange.
        assert queue.exchange.type == "topic"


def test_rabbitmq_publishes_with_confirms_and_heartbeats_and_keeps_late_acks() -> None:
    config = celery_config(Settings(broker_url=AMQP, broker_heartbeat_seconds=15))
    options = config["broker_transport_options"]
    assert options["confirm_publish"] is True
    assert options["read_timeout"] == options["write_timeout"] == 3
    assert "visibility_timeout" not in options  # a Redis notion
    assert config["broker_heartbeat"] == 15
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["task_routes"]["mecc.run_backtest"] == {"queue": "backtests"}


@pytest.mark.parametrize(("url", "amqp"), [
    ("amqp://guest:guest@h:5672//", True), ("amqps://h//", True), ("pyamqp://h//", True),
    ("amqp://a:5672//;amqp://b:5672//", True), ("redis://127.0.0.1:6379/0", False),
    ("rediss://h:6380/0", False), ("", False)])
def test_the_scheme_chooses_the_broker(url: str, amqp: bool) -> None:
    assert is_amqp(url) is amqp


def test_broker_settings_come_from_the_environment_within_bounds() -> None:
    env = {"MECC_BROKER_URL": AMQP, "MECC_BROKER_DELIVERY_LIMIT": "12",
           "MECC_BROKER_HEARTBEAT_SECONDS": "30", "MECC_SECRET_KEY": "s",
           "MECC_PSEUDONYM_KEY": "p"}
    settings = Settings.from_env(env)
    assert (settings.effective_broker_url, settings.broker_delivery_limit,
            settings.broker_heartbeat_seconds) == (AMQP, 12, 30)
    # Below the relay's MAX_ATTEMPTS a worker killed now and then would fail events.
    with pytest.raises(SettingsError):
        Settings.from_env({**env, "MECC_BROKER_DELIVERY_LIMIT": "2"})
