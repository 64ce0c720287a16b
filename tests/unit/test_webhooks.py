"""Signing and the retry schedule, with no services. The signature is checked with the
Standard Webhooks package a receiver would use, and against the spec's recipe by hand."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from mecc.delivery import webhook_client as client
from mecc.delivery import webhook_schedule, webhooks


def key_secret() -> str:
    """A secret shaped like the ones mecc.admin.keys.create_key makes (unpadded base64)."""
    return "whsec_" + secrets.token_urlsafe(32).replace("-", "A").replace("_", "B")


# ------------------------------------------------------------------------------ signing
def test_signature_verifies_with_the_standard_webhooks_package() -> None:
    secret = key_secret()
    body = json.dumps({"type": "prompts.created", "data": {"prompts": []}}).encode()
    headers = webhooks.sign(secret, "3b8e7c1a-0d7e-4c53-9f77-1d2f5f0b8f00", body)

    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert headers["webhook-id"] == "3b8e7c1a-0d7e-4c53-9f77-1d2f5f0b8f00"
    assert headers["Content-Type"] == "application/json"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5


def test_signature_is_the_spec_recipe() -> None:
    """v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">, keyed by the decoded secret."""
    secret = key_secret()
    body = '{"a":"é"}'.encode()
    headers = webhooks.sign(secret, "msg-1", body, at=1_700_000_000)
    raw = secret.removeprefix("whsec_")
    key = base64.b64decode(raw + "=" * (-len(raw) % 4))
    expected = hmac.new(key, b"msg-1.1700000000." + body, hashlib.sha256).digest()

    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


@pytest.mark.parametrize("change", ["body", "secret", "id", "stale"])
def test_a_changed_delivery_does_not_verify(change: str) -> None:
    secret = key_secret()
    body = b'{"type":"prompts.created"}'
    headers = webhooks.sign(secret, "msg-1", body,
                            at=time.time() - 3600 if change == "stale" else None)
    if change == "body":
        body = b'{"type":"prompts.created" }'
    elif change == "secret":
        secret = key_secret()
    elif change == "id":
        headers["webhook-id"] = "msg-2"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


# ------------------------------------------------------------------------------ retry schedule
def seeded(seed: int) -> Any:
    return random.Random(seed).random  # noqa: S311 - reproducible jitter, not a secret


def simulate(rand: Any, failures_until: timedelta | None = None) -> list[timedelta]:
    """Attempt times (from creation) of a delivery that always fails."""
    created = datetime(2026, 1, 1, tzinfo=UTC)
    now, failures, attempts = created, 0, []
    for _ in range(100_000):
        attempts.append(now - created)
        failures += 1
        when = webhook_schedule.next_attempt_at(failures=failures, created_at=created, now=now,
                                        rand=rand)
        if when is None:
            return attempts
        now = when
    raise AssertionError("the schedule never gave up")


@pytest.mark.parametrize("name, rand", [
    ("always the ceiling", lambda: 1.0),
    ("always the floor", lambda: 0.0),
    ("seeded random", seeded(7)),
    ("another seed", seeded(2026)),
])
def test_retries_span_at_least_24_hours_then_give_up(name: str, rand: Any) -> None:
    attempts = simulate(rand)
    span = attempts[-1]
    assert span >= timedelta(hours=24), name
    # The last attempt is the first failure at or after 24 h: at most one step late.
    assert span < timedelta(hours=24) + timedelta(seconds=webhook_schedule.MAX_STEP + 1), name
    assert attempts == sorted(attempts)


def test_random_schedules_make_a_sensible_number_of_attempts() -> None:
    counts = [len(simulate(seeded(seed))) for seed in range(30)]
    # 24 h of steps averaging half an hour once capped: about 60, never hundreds.
    assert all(30 <= c <= 150 for c in counts), counts


def test_ceiling_doubles_from_five_seconds_to_one_hour() -> None:
    ceilings = [webhook_schedule.backoff_ceiling(n) for n in range(1, 16)]
    assert ceilings[:5] == [5.0, 10.0, 20.0, 40.0, 80.0]
    assert all(b == min(2 * a, 3600.0) for a, b in zip(ceilings, ceilings[1:], strict=False))
    assert ceilings[-1] == 3600.0
    assert webhook_schedule.backoff_ceiling(10_000) == 3600.0  # no overflow for absurd counts


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 8, 11, 12, 40])
def test_jitter_stays_within_its_bounds(failures: int) -> None:
    rand = seeded(failures)
    ceiling = webhook_schedule.backoff_ceiling(failures)
    delays = [webhook_schedule.retry_delay(failures, rand) for _ in range(2000)]
    assert all(webhook_schedule.BASE_DELAY <= d <= ceiling for d in delays)
    if ceiling > webhook_schedule.BASE_DELAY:
        # Full jitter spreads over the whole range, not bunched at one end.
        quarter = (ceiling - webhook_schedule.BASE_DELAY) / 4
        assert min(delays) < webhook_schedule.BASE_DELAY + quarter
        assert max(delays) > ceiling - quarter
    assert webhook_schedule.retry_delay(failures, lambda: 0.0) == webhook_schedule.BASE_DELAY
    assert webhook_schedule.retry_delay(failures, lambda: 1.0) == ceiling


def test_retry_after_is_a_floor_and_is_capped() -> None:
    assert webhook_schedule.retry_delay(1, lambda: 1.0, retry_after=120) == 120
    schedule = webhook_schedule
    assert schedule.retry_delay(12, lambda: 1.0, retry_after=120) == 3600  # backoff is longer
    assert schedule.retry_delay(1, lambda: 1.0, retry_after=10 * 86400) == client.RETRY_AFTER_CAP


def test_no_retry_once_the_window_is_spent() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    late = created + timedelta(hours=24)
    assert webhook_schedule.next_attempt_at(failures=60, created_at=created, now=late,
                                    rand=lambda: 1.0) is None
    almost = late - timedelta(seconds=1)
    assert webhook_schedule.next_attempt_at(failures=60, created_at=created, now=almost,
                                    rand=lambda: 1.0) == almost + timedelta(hours=1)
