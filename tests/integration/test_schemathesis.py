"""Schemathesis against the served OpenAPI document: the bounded run that `make test` makes.

Every operation (but the endless SSE stream) with every check schemathesis has: no 5xx, every
answer's status, content type, headers and body as documented, schema-valid requests accepted
and invalid ones refused (tests/support/schemathesis.toml says where and why that is relaxed),
Allow headers, unsupported methods, auth that is not ignored; then the stateful phase, which
follows the spec's explicit links (POST /rules -> publish -> approve, POST /events -> GET
/events/{id}, GET /prompts -> outcome ...). Against gunicorn on PostgreSQL (tests.support.fuzz),
with a fixed seed so a failure here is reproducible with the command it prints.
bench/fuzz_api.py is the long run of the same thing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.factories import assert_problem, make_event
from tests.support.fuzz import fuzz_stack, run_schemathesis, summary
from tests.support.stack import TEST_REDIS_URL, flush_redis_or_skip, unavailable

# About a minute on 2 cores; bench/fuzz_api.py has no such bound.
BOUND = ("--max-examples", "6", "--seed", "20261204")


def test_the_spec_links_operations_for_the_stateful_phase(client: Any) -> None:
    spec = json.loads(client.get("/api/v1/openapi.json").get_data(as_text=True))
    operations = [op for ops in spec["paths"].values() for op in ops.values()
                  if isinstance(op, dict)]
    links = [link for op in operations for response in op["responses"].values()
             if isinstance(response, dict) for link in response.get("links", {}).values()]
    assert len(links) >= 20, links
    missing = {link["operationId"] for link in links} - {op["operationId"] for op in operations}
    assert not missing, missing


@pytest.mark.slow
def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    import psycopg

    flush_redis_or_skip(TEST_REDIS_URL)
    try:
        with fuzz_stack(tmp_path, TEST_REDIS_URL) as target:
            done = run_schemathesis(target, *BOUND, timeout=600)
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL", exc)
    figures = summary(done.stdout)
    report = done.stdout[-20_000:] + done.stderr[-4_000:]
    assert figures["cases"] > 1000, report
    assert done.returncode == 0, report
    assert figures["server_errors"] == 0 and figures["schema_violations"] == 0, report


# ------------------------------------------------------------------ what the runs found
def test_what_schemathesis_found_is_a_clear_answer_not_a_500(client: Any, make_key: Any) -> None:
    """Each of these was a 500, a wrong Allow header or a silently accepted body."""
    key = make_key(organisation="*", scopes=("events:write", "rules:write", "reports:read",
                                             "admin"), callback_hosts=("hooks.example",))
    headers = {"Authorization": f"Bearer {key}"}
    rule = {"key": "bad-source", "title": "T", "topic": "smoking", "priority": 5,
            "kind": "lifestyle_conversation", "when": "true", "prompt": {"summary": "Ask."},
            "sources": [{"label": "A", "url": "http://["}]}
    service = {"id": "odd-url", "name": "N", "service_type": "stop_smoking",
               "referral_url": "http://["}
    for method, path, body, field in (
            ("POST", "/api/v1/rules", rule, "sources.0.url"),
            ("POST", "/api/v1/services", service, "referral_url"),
            ("POST", "/api/v1/services", {**service, "referral_url": None, "contact": False},
             "contact"),
            ("POST", "/api/v1/rules", {**rule, "key": "validate", "sources": []}, "key"),
            ("POST", "/api/v1/services", {**service, "referral_url": None,
                                          "contact": {"email": "a\x1f@b.c"}}, "contact.email"),
            ("POST", "/api/v1/events", make_event(callback_url="https://[::1"), "callback_url"),
            ("GET", "/api/v1/reports/outcomes?from=0001-01-01&to=9999-12-31", None, "from"),
            ("GET", "/api/v1/reports/outcomes?to=0001-01-05", None, "to")):
        response = client.open(path, method=method, json=body, headers=headers)
        assert_problem(response, 422, field)
    for path in ("/api/v1/rules/validate", "/api/v1/rules/dry-run"):
        response = client.get(path, headers=headers)
        assert response.status_code == 405, path
        assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"POST", "OPTIONS"}
    assert client.post("/api/v1/rules/some-rule/versions/99999999999/approve",
                       headers=headers).status_code == 404


def test_string_patterns_use_pythons_whitespace_not_ecmas(client: Any) -> None:
    """The parsers strip and split on Python's whitespace (\\x1c-\\x1f included, U+FEFF not);
    the spec's patterns spell that set out, so schema and server agree on every character."""
    import re

    spec = json.loads(client.get("/api/v1/openapi.json").get_data(as_text=True))
    email = spec["components"]["schemas"]["ContactBody"]["properties"]["email"]["pattern"]
    assert not re.search(email, "a\x1f@b.c") and re.search(email, "a@b.c")
    name = spec["components"]["schemas"]["ServiceBody"]["properties"]["name"]["pattern"]
    assert not re.search(name, "\x1c\u3000 ") and re.search(name, "\ufeff")
