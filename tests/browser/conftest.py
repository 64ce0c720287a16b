"""Browser tests: Debian's Chromium driven by Playwright (no browser download), against the
real stack — gunicorn API, Celery worker, Redis and a database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from stream_stack import (
    Proc,
    create_key,
    flush_redis,
    new_database,
    seed,
    stack_env,
    start_api,
    start_worker,
)

CHROMIUM = Path(os.environ.get("MECC_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REQUIRE_SERVICES = os.environ.get("MECC_REQUIRE_SERVICES") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists() or REQUIRE_SERVICES:
        return
    reason = (f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); "
              "with MECC_REQUIRE_SERVICES=1 this is a failure instead")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class LiveStack:
    base: str
    env: dict[str, str]
    database_url: str
    organisation: str
    key: str


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    try:
        flush_redis()
    except redis.RedisError as exc:
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis is not reachable: {exc}")
        pytest.skip(f"Redis is not reachable: {exc}")
    directory = tmp_path_factory.mktemp("screen")
    url, drop = new_database("sqlite", directory)
    env = stack_env(url, directory)
    seed(env)
    organisation = f"S{uuid.uuid4().hex[:6].upper()}"
    _, key = create_key(env, organisation, "events:write", "prompts:read", "prompts:write")
    procs: list[Proc] = []
    try:
        api, base = start_api(env, directory)
        procs.append(api)
        procs.append(start_worker(env, directory))
        yield LiveStack(base=base, env=env, database_url=url, organisation=organisation,
                        key=key)
    finally:
        for proc in procs:
            proc.stop()
        drop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing and MECC_REQUIRE_SERVICES=1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()
