"""Per-key rate limits: 429 problem with Retry-After, per key, never on health probes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.factories import auth_header


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], redis_url: str) -> dict[str, Any]:
    return {**settings_overrides, "rate_limit": "5 per minute"}


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
