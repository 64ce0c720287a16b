"""Browser tests: Debian's Chromium driven by Playwright (no browser download), against the
real stack — gunicorn API, Celery worker, Redis and a database."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import Proc, start_api, start_beat, start_worker
from tests.support.stack import (
    REQUIRE_SERVICES,
    STREAM_REDIS_URL,
    create_key,
    flush_redis_or_skip,
    new_database,
    seed,
    service_env,
)

CHROMIUM = Path(os.environ.get("MECC_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


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


@contextmanager
def running_stack(directory: Path, *, beat: bool = False, **extra_env: str
                  ) -> Iterator[LiveStack]:
    """API and worker (and beat, when asked) on a fresh seeded SQLite database and the stream
    tests' Redis database (flushed first: one such stack runs at a time)."""
    flush_redis_or_skip(STREAM_REDIS_URL)
    database = new_database("sqlite", directory)
    env = service_env(database.url, STREAM_REDIS_URL, directory, MECC_LOG_LEVEL="WARNING",
                      **extra_env)
    seed(env)
    organisation = f"S{uuid.uuid4().hex[:6].upper()}"
    key = create_key(env, organisation).key
    procs: list[Proc] = []
    try:
        procs.append(start_api(env, directory))
        procs.append(start_worker(env, directory))
        if beat:
            procs.append(start_beat(env, directory))
        yield LiveStack(base=procs[0].base, env=env, database_url=database.url,
                        organisation=organisation, key=key)
    finally:
        for proc in procs:
            proc.stop()
        database.drop()


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with running_stack(tmp_path_factory.mktemp("screen")) as stack:
        yield stack


@pytest.fixture
def live_server(seeded: Any) -> Iterator[str]:
    """The app under test served over HTTP (werkzeug, in a thread) for the page tests."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, seeded, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing and MECC_REQUIRE_SERVICES=1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()
