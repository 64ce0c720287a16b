"""The `mecc` command: keys, database, rule packs, services, and running the whole system."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mecc import cli_packs, cli_valuesets
from mecc.people import cli as people_cli
from mecc.platform.settings import Settings


def _settings() -> Settings:
    return Settings.from_env()


def _database() -> Any:
    from mecc.platform.db import Database

    return Database(_settings().database_url)


def _echo_rows(rows: list[dict[str, Any]], as_json: bool,
               line: Callable[[dict[str, Any]], str]) -> None:
    """A list command's rows: as JSON, or one line each."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(line(row))


@click.group()
def main() -> None:
    """MECC Prompts administration. Reads the same MECC_* settings as the server."""


# Rule packs, services and `mecc seed` (content from files): mecc/cli_packs.py.
main.add_command(cli_packs.rules)
main.add_command(cli_packs.services)
main.add_command(cli_packs.seed)
# Value sets from the published code lists: mecc/cli_valuesets.py.
main.add_command(cli_valuesets.valuesets)
# The people who sign in to the pages: mecc/people/cli.py.
main.add_command(people_cli.users)


# ---------------------------------------------------------------- keys
@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--name", required=True, help="Who the key is for, e.g. 'emis-web Y02345'.")
@click.option("--organisation", required=True, help="ODS code, or '*' for all organisations.")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="Repeat for each scope: events:write, prompts:read, prompts:write, "
                   "rules:read, rules:write, rules:approve, reports:read, admin.")
@click.option("--callback-host", "callback_hosts", multiple=True,
              help="HOST[:PORT] this key's webhooks may reach (repeatable).")
@click.option("--default-callback-url", default=None, help="Webhook URL for events without one.")
@click.option("--json", "as_json", is_flag=True, help="Print {id, key, webhook_secret} as JSON.")
def keys_create(name: str, organisation: str, scopes: tuple[str, ...],
                callback_hosts: tuple[str, ...], default_callback_url: str | None,
                as_json: bool) -> None:
    """Create a key. It is shown once, here; only its hash is stored."""
    from mecc.admin import keys as key_service

    db = _database()
    try:
        with db.session() as session:
            created = key_service.create_key(
                session, name=name, organisation=organisation, scopes=list(scopes),
                callback_hosts=list(callback_hosts), default_callback_url=default_callback_url)
            session.commit()
    except key_service.KeyCreationError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps({"id": created.id, "key": created.key,
                               "webhook_secret": created.webhook_secret}))
        return
    click.echo(f"id: {created.id}")
    click.echo(f"webhook secret (shown once): {created.webhook_secret}")
    click.echo("API key (shown once; store it now):")
    click.echo(created.key)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    """List keys (never their secrets)."""
    from mecc.admin import keys as key_service

    db = _database()
    with db.session() as session:
        rows = [{"id": k.id, "name": k.name, "organisation": k.organisation,
                 "scopes": k.scopes, "callback_hosts": k.callback_hosts,
                 "created_at": k.created_at.isoformat(),
                 "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
                for k in key_service.list_keys(session)]
    db.dispose()
    _echo_rows(rows, as_json, _key_line)


def _key_line(row: dict[str, Any]) -> str:
    state = "revoked" if row["revoked_at"] else "active"
    return (f"{row['id']}  {state:7}  {row['organisation']:8}  {row['name']}  "
            f"[{' '.join(row['scopes'])}]")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by id (it stops working within seconds)."""
    from mecc.admin import keys as key_service

    db = _database()
    with db.session() as session:
        when = key_service.revoke_key(session, key_id)
        session.commit()
    db.dispose()
    if when is None:
        raise click.ClickException(f"no key with id {key_id}")
    click.echo(f"revoked {key_id} at {when.isoformat()}")


# ---------------------------------------------------------------- database
@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations (safe to run repeatedly)."""
    from mecc.store.migrate import upgrade

    upgrade(_settings().database_url)
    click.echo("database is up to date")


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def _path(raw: str) -> Path:
    path = Path(raw)
    if not path.exists():
        raise click.BadParameter(f"{raw} does not exist")
    return path


# ---------------------------------------------------------------- CDS Hooks clients
@main.group("cds-clients")
def cds_clients() -> None:
    """CDS Hooks clients: the JWT issuers allowed to call /cds-services, with their keys."""


@cds_clients.command("add")
@click.option("--iss", required=True, help="The client's JWT issuer (iss), e.g. its base URL.")
@click.option("--jwks", "jwks_path", required=True,
              help="A file holding the client's public JWK Set ({\"keys\": [...]}).")
@click.option("--organisation", required=True, help="ODS code, or '*' for all organisations.")
@click.option("--fhir-server", "fhir_servers", multiple=True,
              help="HOST or HOST:PORT of a FHIR server the service may fetch missing prefetch "
                   "from with the call's fhirAuthorization (repeatable; none: never fetch).")
def cds_clients_add(iss: str, jwks_path: str, organisation: str,
                    fhir_servers: tuple[str, ...]) -> None:
    """Register a client (or replace its keys, organisation and FHIR servers: key rotation)."""
    from mecc.interop import cds

    try:
        jwks = json.loads(_path(jwks_path).read_text())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read a JSON JWK Set from {jwks_path}: {exc}") \
            from None
    database = _database()
    try:
        with database.session() as session:
            row, created = cds.register_client(session, iss=iss, jwks=jwks,
                                               organisation=organisation,
                                               fhir_servers=list(fhir_servers))
            session.commit()
            summary = f"{'added' if created else 'updated'} {row.iss} ({row.organisation}), " \
                      f"{len(jwks['keys'])} key(s), id {row.id}"
    except cds.JwksError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        database.dispose()
    click.echo(summary)
    settings = _settings()
    if not settings.public_url and not settings.cds_audience_from_host:
        click.echo("mecc: warning: MECC_PUBLIC_URL is not set, so the API refuses CDS client "
                   "JWTs (their aud must name it); set it where the API runs.", err=True)


@cds_clients.command("list")
@click.option("--json", "as_json", is_flag=True)
def cds_clients_list(as_json: bool) -> None:
    """List registered clients (their public key ids)."""
    from mecc.interop import cds

    database = _database()
    with database.session() as session:
        rows = [{"id": c.id, "iss": c.iss, "organisation": c.organisation,
                 "kids": [k.get("kid") for k in (c.jwks or {}).get("keys", [])],
                 "fhir_servers": list(c.fhir_servers or []),
                 "created_at": c.created_at.isoformat()} for c in cds.list_clients(session)]
    database.dispose()
    _echo_rows(rows, as_json, lambda row: (
        f"{row['id']}  {row['organisation']:8}  {row['iss']}  "
        f"[{', '.join(str(k) for k in row['kids'])}]"))


@cds_clients.command("remove")
@click.option("--iss", required=True)
def cds_clients_remove(iss: str) -> None:
    """Remove a client: its JWTs stop working at once."""
    from mecc.interop import cds

    database = _database()
    with database.session() as session:
        removed = cds.remove_client(session, iss)
        session.commit()
    database.dispose()
    if not removed:
        raise click.ClickException(f"no CDS client with iss {iss}")
    click.echo(f"removed {iss}")


# ---------------------------------------------------------------- everything
@main.command("run")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--concurrency", default=2, show_default=True, help="Celery worker processes.")
def run(workers: int, concurrency: int) -> None:
    """Run API, worker and beat in the foreground until Ctrl-C / SIGTERM stops them all."""
    from mecc.platform.supervisor import run_all

    sys.exit(run_all(_settings(), web_workers=workers, concurrency=concurrency))
