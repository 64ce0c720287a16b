"""Per-key rate limits: 429 problem with Retry-After, per key, never on health probes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.factories import auth_header


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], redis_url: str) -> dict[str, Any]:
    return {**settings_overrides, "rate_limit": "5 per minute",
            "auth_failure_limit": "3 per minute"}


def test_a_key_over_its_budget_gets_429_with_retry_after(client: Any, make_key: Any) -> None:
    busy, quiet = make_key(), make_key()
    answers = [client.get("/api/v1/prompts", headers=auth_header(busy)).status_code
               for _ in range(7)]
    assert answers == [200] * 5 + [429] * 2
    limited = client.get("/api/v1/prompts", headers=auth_header(busy))
    assert limited.content_type == "application/problem+json"
    assert int(limited.headers["Retry-After"]) > 0
    assert client.get("/api/v1/prompts", headers=auth_header(quiet)).status_code == 200
    assert all(client.get("/healthz").status_code == 200 for _ in range(10))


# ------------------------------------------------------------------ issue 13, findings 10-11
def test_failed_authentication_is_limited_by_client_address(client: Any,
                                                            make_key: Any) -> None:
    valid = make_key()
    for attempt in range(3):  # a new guess each time: no per-key limit ever sees it
        guess = f"mecc_{attempt:012d}_{'x' * 30}"
        assert client.get("/api/v1/prompts", headers=auth_header(guess)).status_code == 401
    blocked = client.get("/api/v1/prompts", headers=auth_header("mecc_000000000009_" + "y" * 30))
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    # The address is refused altogether for the rest of the window, without a lookup.
    assert client.get("/api/v1/prompts", headers=auth_header(valid)).status_code == 429
    assert client.get("/healthz").status_code == 200


def test_only_the_stream_itself_is_exempt_and_retry_after_goes_only_with_429(
        client: Any, make_key: Any) -> None:
    key = make_key()
    answers = [client.post("/api/v1/stream-tokens", json={"organisation": "Y02345"},
                           headers=auth_header(key)) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert all("Retry-After" not in a.headers for a in answers[:5])
    assert int(answers[5].headers["Retry-After"]) > 0


def test_invented_http_methods_share_one_metrics_series(client: Any, make_key: Any) -> None:
    for method in ("FOOBAR", "XYZZY"):
        client.open("/api/v1/prompts", method=method, headers=auth_header(make_key()))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'method="other"' in metrics
    assert "FOOBAR" not in metrics and "XYZZY" not in metrics
