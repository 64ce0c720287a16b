"""The one harness for tests and benchmarks: real processes, their environment, and rows.

    processes   Proc (start, wait until ready, logs, stop by its own id), free_port,
                wait_until, start_api (gunicorn), start_worker / start_beat (Celery)
    stack       the environment every mecc process of one stack shares, databases made and
                dropped, Redis databases (which test uses which), `mecc seed`,
                `mecc keys create`, FLUSHDB, skip-or-fail when a service is missing
    servers     a Redis and a PostgreSQL cluster of our own, safe to crash (bench/faults)
    workers     a Celery worker / beat for an in-process app under test, wait_for
    sse         a real Server-Sent Events client
    factories   request bodies and rows with sensible defaults: make_event, auth_header,
                post_event, assert_problem, add_key, add_prompt, add_push_message
    people      add_person (an account that signs in), sign_in_on_page (Playwright)
    accessibility  axe_violations: axe-core's serious and critical findings on a page

Fixtures stay in tests/conftest.py; everything here is a plain function or class, imported
as `from tests.support.stack import seed`. Nothing here imports pytest at module level, so the
benchmarks (`python -m bench.<name>`) use the same code.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
