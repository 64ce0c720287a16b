"""Schemathesis against a real stack: the bounded run in `make test`
(tests/integration/test_schemathesis.py) and the long run (bench/fuzz_api.py) share this.

The stack is what `make run` serves: gunicorn with the API's own configuration on a fresh
PostgreSQL database, seeded with the default rules and services, plus a few prompts so that
the list -> item links have something to follow. Schemathesis runs as its own command (`st
run`), as an operator would run it, with tests/support/schemathesis.toml.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import start_api
from tests.support.stack import create_key, flush_redis, new_database, seed, service_env

CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = str(Path(sys.executable).with_name("st"))
ORGANISATION = "Y02345"
ALL_SCOPES = ("events:write", "prompts:read", "prompts:write", "rules:read", "rules:write",
              "rules:approve", "reports:read", "admin")


@dataclass(frozen=True)
class FuzzTarget:
    base_url: str
    key: str
    workdir: Path


@contextmanager
def fuzz_stack(workdir: Path, redis_url: str, *, prefix: str = "mecc_test_fuzz",
               name: str | None = None, workers: int = 2) -> Iterator[FuzzTarget]:
    """A seeded stack on a database of its own; the database is dropped afterwards."""
    from mecc.platform.db import Database
    from tests.support.factories import add_prompt

    workdir.mkdir(parents=True, exist_ok=True)
    database = new_database("postgresql", workdir, prefix=prefix, name=name, migrate=False)
    flush_redis(redis_url)
    # No request limits: the run sends thousands of requests with one key, and thousands
    # without it from one address, on purpose (test_rate_limit.py tests both limits).
    env = service_env(database.url, redis_url, workdir / "var", MECC_RATE_LIMIT="off",
                      MECC_AUTH_FAILURE_LIMIT="off", MECC_LOG_LEVEL="WARNING")
    try:
        seed(env)
        # Every organisation: rules for all organisations need such a key (an organisation's
        # key may only write its own rules).
        key = create_key(env, "*", ALL_SCOPES, name="schemathesis").key
        db = Database(database.url)
        with db.session() as session:
            for person in ("p-1", "p-2", "p-3"):
                add_prompt(session, organisation=ORGANISATION, person_id=person)
            session.commit()
        db.dispose()
        api = start_api(env, workdir, workers=workers)
        try:
            yield FuzzTarget(api.base, key, workdir)
        finally:
            api.stop()
    finally:
        database.drop()


def run_schemathesis(target: FuzzTarget, *options: str,
                     timeout: float) -> subprocess.CompletedProcess[str]:
    """`st run` over the served spec with every check and every phase (examples, coverage,
    fuzzing, stateful); `options` bound it (--max-examples, --max-time, --seed ...)."""
    argv: Sequence[str] = [
        ST, "--config-file", str(CONFIG), "run", f"{target.base_url}/api/v1/openapi.json",
        "--header", f"Authorization: Bearer {target.key}", "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        # One worker: CPython 3.11.7's ast.parse is not thread-safe ("AST constructor recursion
        # depth mismatch"), and Hypothesis calls it to describe strategies.
        "--workers", "1",
        "--request-timeout", "30", "--generation-database", "none", "--no-color",
        "--output-truncate", "true", *options]
    return subprocess.run(argv, cwd=target.workdir, capture_output=True, text=True,
                          timeout=timeout, check=False)


def summary(output: str) -> dict[str, int]:
    """The figures of a run's summary: test cases generated, and failures by kind."""
    figures = {"cases": 0, "server_errors": 0, "schema_violations": 0, "failures": 0}
    generated = re.search(r"(\d+) generated", output)
    if generated:
        figures["cases"] = int(generated.group(1))
    for pattern, name in ((r"ST101 Server error: (\d+)", "server_errors"),
                          (r"ST108 Response violates schema: (\d+)", "schema_violations"),
                          (r"(\d+) unique failures?", "failures")):
        found = re.search(pattern, output)
        if found:
            figures[name] = int(found.group(1))
    return figures
