"""`mecc users ...`: the people who sign in to the pages (run by an administrator on the server)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from mecc.people import accounts, roles

if TYPE_CHECKING:
    from mecc.platform.db import Database


def _database() -> Database:
    from mecc.platform.db import Database
    from mecc.platform.settings import Settings

    return Database(Settings.from_env().database_url)


@click.group("users")
def users() -> None:
    """Create, list and disable the accounts people sign in with."""


@users.command("create")
@click.option("--email", required=True, help="The person's email address (their sign-in name).")
@click.option("--name", required=True, help="Their name, as the audit log shows it.")
@click.option("--role", required=True, type=click.Choice(list(roles.ROLES)),
              help="viewer, rule_author, clinical_safety_officer or admin.")
@click.option("--organisation", required=True,
              help="ODS code of their organisation, or '*' for every organisation.")
@click.option("--password-stdin", is_flag=True,
              help="Read a password (first line of standard input). Without it the person "
                   "signs in only through the organisation's OpenID provider.")
def users_create(email: str, name: str, role: str, organisation: str,
                 password_stdin: bool) -> None:
    """Create an account."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    db = _database()
    try:
        with db.session() as session:
            user = accounts.create_user(session, email=email, name=name, role=role,
                                        organisation=organisation, password=password)
            session.commit()
            line = f"created {user.email} ({roles.LABELS[user.role]}, {user.organisation})"
    except accounts.AccountError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        db.dispose()
    click.echo(line + ("" if password is not None else "; signs in with OpenID Connect only"))


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
def users_list(as_json: bool) -> None:
    """List accounts (never their password hashes)."""
    db = _database()
    with db.session() as session:
        rows = [{"email": u.email, "name": u.name, "role": u.role,
                 "organisation": u.organisation, "password": u.password_hash is not None,
                 "oidc": u.oidc_subject is not None,
                 "created_at": u.created_at.isoformat(),
                 "last_signed_in_at": u.last_signed_in_at.isoformat()
                 if u.last_signed_in_at else None,
                 "disabled_at": u.disabled_at.isoformat() if u.disabled_at else None}
                for u in accounts.list_users(session)]
    db.dispose()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "disabled" if row["disabled_at"] else "active"
        ways = "+".join(w for w in ("password", "oidc") if row[w]) or "oidc, not yet used"
        click.echo(f"{row['email']}  {state:8}  {row['role']:23}  {row['organisation']:8}  "
                   f"{row['name']}  [sign-in: {ways}]")


@users.command("disable")
@click.argument("email")
def users_disable(email: str) -> None:
    """Disable an account: its sessions end at their next request."""
    db = _database()
    with db.session() as session:
        user = accounts.disable_user(session, email)
        session.commit()
    db.dispose()
    if user is None:
        raise click.ClickException(f"no account for {email}")
    click.echo(f"disabled {user.email}")
