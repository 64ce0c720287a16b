"""The one send path: every task goes through Publisher.send and its circuit breaker."""

from __future__ import annotations

from typing import Any

import pytest

from mecc.platform import broker, task_names
from mecc.platform.broker import Publisher


class Broker:
    """A stand-in for the Celery app's send_task (the third-party edge), recording sends."""

    def __init__(self, *, up: bool = True) -> None:
        self.up = up
        self.sent: list[tuple[str, list[Any]]] = []
        self.tries = 0

    def send_task(self, name: str, args: list[Any]) -> None:
        self.tries += 1
        if not self.up:
            raise ConnectionError("broker down")
        self.sent.append((name, args))


def publisher(celery: Broker) -> Publisher:
    return Publisher(celery)  # type: ignore[arg-type]


def test_each_send_names_its_task_once_defined() -> None:
    celery = Broker()
    pub = publisher(celery)
    assert pub.send_evaluate(["e1", "e2"])
    assert pub.send_deliver(["d1"])
    assert pub.send_backtest("b1")
    assert celery.sent == [(task_names.EVALUATE_EVENTS, [["e1", "e2"]]),
                           (task_names.DELIVER_WEBHOOKS, [["d1"]]),
                           (task_names.RUN_BACKTEST, ["b1"])]


def test_nothing_to_send_sends_nothing() -> None:
    celery = Broker()
    pub = publisher(celery)
    assert pub.send_evaluate([]) is True  # nothing was lost
    assert pub.send_deliver([]) is False  # nothing was handed to a worker
    assert celery.tries == 0


@pytest.mark.parametrize("first", ["evaluate", "deliver", "backtest"])
def test_one_failure_opens_the_breaker_for_every_kind_of_send(
        first: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(broker.time, "monotonic", lambda: clock[0])
    celery = Broker(up=False)
    pub = publisher(celery)
    sends = {"evaluate": lambda: pub.send_evaluate(["e1"]),
             "deliver": lambda: pub.send_deliver(["d1"]),
             "backtest": lambda: pub.send_backtest("b1")}
    assert sends[first]() is False
    assert pub.is_open and celery.tries == 1
    celery.up = True
    # While open, no send reaches the broker: a dead broker costs requests nothing.
    assert [send() for send in sends.values()] == [False, False, False]
    assert celery.tries == 1
    clock[0] += broker.BREAKER_SECONDS + 0.1
    assert not pub.is_open
    assert [send() for send in sends.values()] == [True, True, True]
    assert [name for name, _ in celery.sent] == [
        task_names.EVALUATE_EVENTS, task_names.DELIVER_WEBHOOKS, task_names.RUN_BACKTEST]
