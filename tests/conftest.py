"""Fixtures: the real app on a real database (SQLite and PostgreSQL), keys, seeded rules.

Integration tests run once per backend; each backend is migrated once per session. SQLite:
every test gets a copy of the migrated file. PostgreSQL: every test runs in a transaction that
is rolled back, unless it is marked `commits` (see `database_url` and `app`). Plain helpers
(event bodies, row factories, processes) live in tests/support, not here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from tests.support.factories import add_key
from tests.support.stack import TEST_REDIS_URL, flush_redis_or_skip, new_database, unavailable

# Keep generated secrets and SQLite files out of the checkout's var/.
_VAR = tempfile.mkdtemp(prefix="mecc-test-var-")
os.environ.setdefault("MECC_VAR_DIR", _VAR)
os.environ.setdefault("MECC_SECRET_KEY", "test-secret-key")
os.environ.setdefault("MECC_PSEUDONYM_KEY", "test-pseudonym-key")

BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "commits: the test's rows are really committed on PostgreSQL, because "
        "another process or connection must see them (a Celery worker or beat, the mecc CLI, "
        "a second app or engine, threads with connections of their own)")


# ------------------------------------------------------------------------------ databases
# PostgreSQL isolation. By default a test's app runs inside one transaction on one connection,
# rolled back when the test ends: the app's sessions join it through savepoints (a commit
# releases a savepoint, a rollback returns to it), so nothing is committed and the next test
# starts from empty tables without a TRUNCATE. That only works while every reader and writer is
# that one connection. A test whose rows a real worker process (or beat, the CLI, a second
# engine, another thread's connection) must see is marked `@pytest.mark.commits`: its app
# commits for real, and the tables are TRUNCATEd before the next PostgreSQL test. The tables
# are also checked after every test, so a test that commits without the mark (through an app
# of its own) still leaves the next one clean.

_pg_dirty = True  # unknown at the start of a session: truncate before the first test


@pytest.fixture(scope="session")
def pg_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh PostgreSQL database for this session, migrated once, dropped at the end."""
    import psycopg

    try:
        database = new_database("postgresql", tmp_path_factory.mktemp("pg"), prefix="mecc_test")
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL", exc)
    yield database.url
    database.drop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mecc.store.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _table_names() -> list[str]:
    from mecc.platform.db import Base

    return [f'"{t.name}"' for t in Base.metadata.sorted_tables]


def _truncate_all(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(_table_names())} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


def _any_rows(url: str) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    # Table names from our own metadata, not input.
    probe = " OR ".join(f"EXISTS (SELECT 1 FROM {name})"  # noqa: S608
                        for name in _table_names())
    try:
        with engine.connect() as conn:
            return bool(conn.execute(text(f"SELECT {probe}")).scalar())
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    global _pg_dirty

    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "mecc.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("pg_database")
    if _pg_dirty:
        _truncate_all(url)
    _pg_dirty = True  # until the check below says otherwise (a failed teardown, say)
    yield url
    _pg_dirty = _any_rows(url)


def _commits(request: pytest.FixtureRequest) -> bool:
    # MECC_TEST_PG_COMMIT=1 runs every test the old way (real commits, TRUNCATE between), to
    # tell a savepoint artefact from a real failure.
    return (request.node.get_closest_marker("commits") is not None
            or os.environ.get("MECC_TEST_PG_COMMIT") == "1")


# ------------------------------------------------------------------------------ the app


@pytest.fixture
def redis_url() -> str:
    return flush_redis_or_skip(TEST_REDIS_URL)


@pytest.fixture
def settings_overrides(database_url: str, tmp_path: Path) -> dict[str, Any]:
    # CDS client JWTs name http://localhost (the test client's URL) as their aud; the
    # production default (no MECC_PUBLIC_URL: no JWT accepted) is tested in test_hardening.
    # Every test calls from 127.0.0.1, and many present bad keys on purpose: the limit on
    # failed authentication per address is tested in test_rate_limit.
    return {"database_url": database_url, "redis_url": TEST_REDIS_URL,
            "var_dir": str(tmp_path), "secret_key": "test-secret-key",
            "pseudonym_key": "test-pseudonym-key", "cds_audience_from_host": True,
            "auth_failure_limit": "off"}


@pytest.fixture
def app(settings_overrides: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[Any]:
    from sqlalchemy.orm import sessionmaker

    from mecc.api import create_app
    from mecc.views import auth

    application = create_app(settings_overrides)
    application.config["TESTING"] = True
    db = application.extensions["mecc"].db
    outer = None
    if not db.is_sqlite and not _commits(request):
        connection = db.engine.connect()
        outer = connection.begin()
        db.sessionmaker = sessionmaker(bind=connection, expire_on_commit=False,
                                       join_transaction_mode="create_savepoint")
    try:
        yield application
    finally:
        auth.clear_cache()
        if outer is not None:
            try:
                outer.rollback()
            finally:
                outer.connection.close()
        db.dispose()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


KeyFactory = Callable[..., str]


@pytest.fixture
def make_key(app: Any) -> KeyFactory:
    """Create an API key in the app's database; returns the plaintext key."""

    def factory(organisation: str = "Y02345", scopes: tuple[str, ...] = (
            "events:write", "prompts:read", "prompts:write"), *,
            callback_hosts: tuple[str, ...] = (), name: str = "test") -> str:
        return add_key(app.extensions["mecc"].db, organisation=organisation, scopes=scopes,
                       callback_hosts=callback_hosts, name=name).key

    return factory


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
