"""The `mecc` command, run through click's CliRunner against the test database."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect, select, text

from mecc.cli import main
from mecc.store.models import ApiKey
from mecc.views import auth
from tests.support.factories import auth_header, make_event

KEY = re.compile(r"^mecc_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{20,64}$")


@pytest.fixture
def mecc(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `mecc ARGS...` against this test's database."""
    monkeypatch.setenv("MECC_DATABASE_URL", database_url)
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(main, list(args), catch_exceptions=False)

    return run


def create(mecc: Any, *extra: str, organisation: str = "Y02345",
           scopes: tuple[str, ...] = ("events:write", "prompts:read")) -> Result:
    args = ["keys", "create", "--name", "emis-web Y02345", "--organisation", organisation]
    for scope in scopes:
        args += ["--scope", scope]
    return mecc(*args, *extra)


def key_rows(app: Any) -> list[ApiKey]:
    with app.extensions["mecc"].db.session() as session:
        return list(session.scalars(select(ApiKey)))


# ------------------------------------------------------------------------------ keys create
def test_keys_create_prints_the_key_alone_on_the_last_line(app: Any, client: Any,
                                                           mecc: Any) -> None:
    result = create(mecc)

    assert result.exit_code == 0, result.output
    key = result.stdout.rstrip("\n").splitlines()[-1]
    assert KEY.match(key), result.stdout
    response = client.post("/api/v1/events", json=make_event(), headers=auth_header(key))
    assert response.status_code == 202
    [row] = key_rows(app)
    assert row.organisation == "Y02345" and sorted(row.scopes) == ["events:write",
                                                                    "prompts:read"]
    # Stored only as a hash.
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps([str(getattr(row, c.key)) for c in ApiKey.__table__.columns])


def test_keys_create_json_gives_id_key_and_webhook_secret(app: Any, client: Any,
                                                          mecc: Any) -> None:
    result = create(mecc, "--json", "--callback-host", "hooks.gp.example",
                    "--callback-host", "localhost:8443")

    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert set(created) == {"id", "key", "webhook_secret"}
    assert KEY.match(created["key"])
    assert re.fullmatch(r"whsec_[A-Za-z0-9]{32,}", created["webhook_secret"])
    [row] = key_rows(app)
    assert row.id == created["id"]
    assert row.callback_hosts == ["hooks.gp.example", "localhost:8443"]
    body = make_event(callback_url="https://hooks.gp.example/mecc")
    response = client.post("/api/v1/events", json=body, headers=auth_header(created["key"]))
    assert response.status_code == 202


def test_keys_create_for_all_organisations(client: Any, mecc: Any) -> None:
    result = create(mecc, "--json", organisation="*")
    key = json.loads(result.stdout)["key"]
    for ods in ("A81001", "Y02345"):
        response = client.post("/api/v1/events", json=make_event(organisation=ods),
                               headers=auth_header(key))
        assert response.status_code == 202


def test_each_key_is_different(mecc: Any) -> None:
    first = json.loads(create(mecc, "--json").stdout)
    second = json.loads(create(mecc, "--json").stdout)
    assert first["key"] != second["key"]
    assert first["webhook_secret"] != second["webhook_secret"]


@pytest.mark.parametrize(("extra", "message"), [
    (("--scope", "events:read"), "unknown scopes ['events:read']"),
    (("--scope", "superuser"), "choose from events:write"),
])
def test_keys_create_refuses_a_bad_scope(app: Any, mecc: Any, extra: tuple[str, ...],
                                         message: str) -> None:
    result = mecc("keys", "create", "--name", "x", "--organisation", "Y02345", *extra)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert key_rows(app) == []


@pytest.mark.parametrize(("extra", "message"), [
    (("--organisation", "not an ods!", "--scope", "admin"), "organisation"),
    (("--organisation", "Y02345", "--scope", "admin", "--callback-host", "https://x.example/"),
     "callback host"),
    (("--organisation", "Y02345"), "--scope"),
])
def test_keys_create_refuses_bad_input_clearly(app: Any, mecc: Any, extra: tuple[str, ...],
                                               message: str) -> None:
    result = mecc("keys", "create", "--name", "x", *extra)
    assert result.exit_code != 0
    assert message in result.output
    assert key_rows(app) == []


# ------------------------------------------------------------------------------ keys list / revoke
def test_keys_list_never_shows_a_key_or_its_hash(app: Any, mecc: Any) -> None:
    created = json.loads(create(mecc, "--json").stdout)
    [row] = key_rows(app)
    secrets = [created["key"], created["key"].rsplit("_", 1)[1], row.key_hash,
               created["webhook_secret"]]

    plain = mecc("keys", "list")
    as_json = mecc("keys", "list", "--json")

    assert plain.exit_code == 0 and as_json.exit_code == 0
    assert created["id"] in plain.stdout and "emis-web Y02345" in plain.stdout
    for secret in secrets:
        assert secret not in plain.output
        assert secret not in as_json.output
    [listed] = json.loads(as_json.stdout)
    assert listed["id"] == created["id"] and listed["revoked_at"] is None
    assert not {"key", "key_hash", "webhook_secret", "lookup"} & listed.keys()


def test_keys_revoke_stops_the_key(client: Any, mecc: Any) -> None:
    created = json.loads(create(mecc, "--json").stdout)
    headers = auth_header(created["key"])
    assert client.post("/api/v1/events", json=make_event(), headers=headers).status_code == 202

    result = mecc("keys", "revoke", created["id"])
    auth.clear_cache()

    assert result.exit_code == 0, result.output
    assert f"revoked {created['id']}" in result.stdout
    assert client.post("/api/v1/events", json=make_event(), headers=headers).status_code == 401
    [listed] = json.loads(mecc("keys", "list", "--json").stdout)
    assert listed["revoked_at"] is not None
    assert "revoked" in mecc("keys", "list").stdout
    # Revoking again is harmless and keeps the first time.
    again = mecc("keys", "revoke", created["id"])
    assert again.exit_code == 0
    assert json.loads(mecc("keys", "list", "--json").stdout)[0]["revoked_at"] == \
        listed["revoked_at"]


def test_keys_revoke_of_an_unknown_id_fails(mecc: Any) -> None:
    result = mecc("keys", "revoke", "no-such-key")
    assert result.exit_code != 0
    assert "no key with id no-such-key" in result.output


# ------------------------------------------------------------------------------ db upgrade
def _tables_and_revision(url: str) -> tuple[set[str], str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            return set(inspect(conn).get_table_names()), revision
    finally:
        engine.dispose()


def test_db_upgrade_is_idempotent(database_url: str, mecc: Any) -> None:
    before = _tables_and_revision(database_url)
    for _ in range(2):
        result = mecc("db", "upgrade")
        assert result.exit_code == 0, result.output
        assert "up to date" in result.stdout
    assert _tables_and_revision(database_url) == before


def test_db_upgrade_creates_a_fresh_database(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'mecc.platform.db'}"
    monkeypatch.setenv("MECC_DATABASE_URL", url)
    runner = CliRunner()
    first = runner.invoke(main, ["db", "upgrade"], catch_exceptions=False)
    tables, revision = _tables_and_revision(url)
    second = runner.invoke(main, ["db", "upgrade"], catch_exceptions=False)

    assert first.exit_code == 0 and second.exit_code == 0
    assert {"api_keys", "events", "prompts", "audit_log"} <= tables
    assert _tables_and_revision(url) == (tables, revision)
