"""Fixtures: the real app on a real database (SQLite and PostgreSQL), keys, event bodies.

Integration tests run once per backend. Each backend is migrated once per session; each test
starts from empty tables (a copied SQLite file, or truncated PostgreSQL tables).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Keep generated secrets and SQLite files out of the checkout's var/.
_VAR = tempfile.mkdtemp(prefix="mecc-test-var-")
os.environ.setdefault("MECC_VAR_DIR", _VAR)
os.environ.setdefault("MECC_SECRET_KEY", "test-secret-key")
os.environ.setdefault("MECC_PSEUDONYM_KEY", "test-pseudonym-key")

PG_ADMIN_DSN = os.environ.get("MECC_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres "
                              "dbname=postgres connect_timeout=3")
TEST_REDIS_URL = os.environ.get("MECC_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
REQUIRE_SERVICES = os.environ.get("MECC_REQUIRE_SERVICES") == "1"
BACKENDS = ("sqlite", "postgresql")
PROBLEM_JSON = "application/problem+json"


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if REQUIRE_SERVICES:
        pytest.fail(message + "; MECC_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, migrated once, dropped at the end."""
    import psycopg

    from mecc.store.migrate import upgrade

    name = f"mecc_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
    admin.execute(f'CREATE DATABASE "{name}"')
    params = dict(p.split("=", 1) for p in PG_ADMIN_DSN.split())
    url = (f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host')}:"
           f"{params.get('port', '5432')}/{name}")
    upgrade(url)
    yield url
    from sqlalchemy import create_engine

    create_engine(url).dispose()
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mecc.store.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate_all(url: str) -> None:
    from sqlalchemy import create_engine, text

    from mecc.platform.db import Base

    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "mecc.platform.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    _truncate_all(url)
    return url


@pytest.fixture
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()  # this test database only: never FLUSHALL, other things share Redis
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    finally:
        client.close()
    return TEST_REDIS_URL


@pytest.fixture
def settings_overrides(database_url: str, tmp_path: Path) -> dict[str, Any]:
    return {"database_url": database_url, "redis_url": TEST_REDIS_URL,
            "var_dir": str(tmp_path), "secret_key": "test-secret-key",
            "pseudonym_key": "test-pseudonym-key"}


@pytest.fixture
def app(settings_overrides: dict[str, Any]) -> Iterator[Any]:
    from mecc.api import create_app
    from mecc.platform import auth

    application = create_app(settings_overrides)
    application.config["TESTING"] = True
    yield application
    auth.clear_cache()
    application.extensions["mecc"].db.dispose()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


KeyFactory = Callable[..., str]


@pytest.fixture
def make_key(app: Any) -> KeyFactory:
    """Create an API key in the app's database; returns the plaintext key."""
    from mecc.admin import keys

    def factory(organisation: str = "Y02345", scopes: tuple[str, ...] = (
            "events:write", "prompts:read", "prompts:write"), *,
            callback_hosts: tuple[str, ...] = (), name: str = "test") -> str:
        db = app.extensions["mecc"].db
        with db.session() as session:
            created = keys.create_key(session, name=name, organisation=organisation,
                                      scopes=list(scopes), callback_hosts=list(callback_hosts))
            session.commit()
        return created.key

    return factory


def auth_header(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post_event(client: Any, key: str, body: dict[str, Any]) -> str:
    """POST one event, which must be accepted; its id."""
    response = client.post("/api/v1/events", json=body, headers=auth_header(key))
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def assert_problem(response: Any, status: int, *paths: str) -> dict[str, Any]:
    """An RFC 9457 problem with this status, naming each of `paths` in `errors`."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = json.loads(response.get_data(as_text=True))
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    if status == 422:
        assert isinstance(body.get("errors"), dict) and body["errors"], body
        for path, messages in body["errors"].items():
            assert isinstance(path, str) and messages and all(isinstance(m, str)
                                                             for m in messages), body
    for path in paths:
        assert path in body.get("errors", {}), (path, body)
    return body


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid contact event (the CONTRACT.md example, with a fresh id and a recent time)."""
    body: dict[str, Any] = {
        "event_id": f"ev-{uuid.uuid4().hex[:12]}",
        "source": "emis-web",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "organisation": "Y02345",
        "setting": "general_practice",
        "contact_type": "appointment",
        "staff": {"id": "st-991", "role": "practice_nurse", "team": "blue"},
        "person": {
            "id": "p-7f3a1c",
            "nhs_number": "9434765919",
            "birth_date": "1971-04-02",
            "sex": "female",
            "ethnicity_group": "south_asian",
            "postcode_district": "M14",
        },
        "facts": {"smoking_status": "current", "bmi": 28.4, "audit_c": 6, "phq2": 1},
        "conditions": [
            {"system": "http://snomed.info/sct", "code": "44054006",
             "display": "Type 2 diabetes mellitus", "onset_date": "2026-09-30"}
        ],
        "preferences": {"opted_out": False, "declined_topics": ["alcohol"]},
    }
    body.update(overrides)
    return body


@pytest.fixture
def seeded(app: Any) -> Any:
    """The default rule pack and example services loaded into the app's database."""
    from mecc.admin import rule_store
    from mecc.admin import services as service_store
    from mecc.clinical.directory import load_services
    from mecc.clinical.rulepack import load_rule_pack

    runtime = app.extensions["mecc"]
    with runtime.db.session() as session:
        rule_store.load_rules(session, load_rule_pack(ROOT / "config" / "rules",
                                                      runtime.catalogue), actor="test")
        service_store.upsert_services(session, load_services(ROOT / "config" / "services"),
                                      actor="test")
        session.commit()
    return app


@pytest.fixture
def evaluate_pending(seeded: Any) -> Callable[[], int]:
    """Evaluate every queued event in-process with the pipeline's own functions.

    For tests of the HTTP surface around prompts; the worker process itself is exercised in
    tests/integration/test_pipeline.py.
    """
    from sqlalchemy import select

    from mecc.admin import rule_store
    from mecc.admin import services as service_store
    from mecc.evaluation import pipeline
    from mecc.store.models import Event

    runtime = seeded.extensions["mecc"]
    rules = rule_store.LiveRuleCache(runtime.catalogue)
    services = service_store.ServiceCache()

    def run() -> int:
        with runtime.db.session() as session:
            ids = list(session.scalars(select(Event.id).where(Event.status == "queued")))
            token, rows = pipeline.claim(session, ids)
            session.commit()
            result = pipeline.evaluate_claimed(
                session, token, rows, ruleset=rules.get(session),
                services=services.get(session), catalogue=runtime.catalogue,
                max_prompts=runtime.settings.max_prompts_per_contact)
            session.commit()
        return len(result.evaluated)

    return run
