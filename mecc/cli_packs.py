"""`mecc rules`, `mecc services` and `mecc seed`: content from files, never over an edit.

`mecc seed` (run by `make run` on every start) fills an empty installation from config/ and
later only adds rules and services whose keys are new: what an administrator published or
changed survives every restart. `mecc rules load` turns a changed rule into a new draft version
and shows what changed; publishing it is a separate, reviewed step. `mecc services load`
replaces an installed service only with --replace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def _cli() -> Any:
    # The shared helpers live in mecc.cli, which imports this module: import it when used.
    from mecc import cli

    return cli


# ---------------------------------------------------------------- rules
@click.group()
def rules() -> None:
    """Rule packs: load, export, validate."""


def _catalogue() -> Any:
    from mecc.clinical.catalogue import load_catalogue

    return load_catalogue(_cli()._settings().config_dir)


def _read_pack(path: Path) -> list[Any]:
    from mecc.clinical.rulepack import RulePackError, load_rule_pack

    try:
        return load_rule_pack(path, _catalogue())
    except RulePackError as exc:
        _cli()._fail(str(exc))
        raise  # unreachable: _fail exits


@rules.command("validate")
@click.argument("path")
def rules_validate(path: str) -> None:
    """Check a rule-pack file (or directory) without loading it."""
    pack = _read_pack(_cli()._path(path))
    click.echo(f"{len(pack)} rules OK")


def _load_rules(path: str, actor: str, *, add_versions: bool) -> Any:
    from mecc.admin import rule_store

    cli = _cli()
    pack = _read_pack(cli._path(path))
    database = cli._database()
    with database.session() as session:
        summary = rule_store.load_rules(
            session, pack, actor=actor, add_versions=add_versions,
            approval_required=cli._settings().publish_approval == "required")
        session.commit()
    database.dispose()
    return summary


def _rules_line(summary: Any, installed: str) -> str:
    line = f"Rules: {len(summary.added)} new"
    if summary.added:
        line += (f" ({len(summary.published)} published, {len(summary.awaiting_approval)} "
                 "awaiting approval)")
    if summary.drafted:
        line += f", {len(summary.drafted)} with a new draft version"
    return f"{line}, {len(summary.unchanged)} {installed}."


@rules.command("load")
@click.argument("path")
@click.option("--actor", default="cli", help="Recorded in the audit log.")
def rules_load(path: str, actor: str) -> None:
    """Load a rule pack. New rules are added (`status: active` ones published, through
    approval when the installation has rules); a changed installed rule becomes a new draft
    version, with what changed; nothing installed is published, retired or replaced."""
    from mecc.clinical.rule_diff import format_changes

    summary = _load_rules(path, actor, add_versions=True)
    click.echo(_rules_line(summary, "unchanged"))
    for key in summary.awaiting_approval:
        click.echo(f"{key}: waiting for approval to publish version 1 "
                   f"(POST /api/v1/rules/{key}/versions/1/approve).")
    for key, version, changes in summary.drafted:
        click.echo(f"{key}: new draft version {version}; publish it to make it live. Changes "
                   "from the latest version:")
        click.echo(format_changes(changes))


@rules.command("export")
@click.option("--status", type=click.Choice(["active", "draft", "retired"]), default=None)
def rules_export(status: str | None) -> None:
    """Print the rules (each rule's live version, else its latest) as a rule-pack YAML."""
    from mecc.admin import rule_store
    from mecc.clinical.rulepack import dump_rule_pack

    catalogue = _catalogue()
    database = _cli()._database()
    with database.session() as session:
        pack = []
        for state, row in rule_store.list_rules(session, status=status):
            rule = rule_store.version_to_rule(row, catalogue)
            # The exported status is the rule's, so loading the export reproduces it.
            pack.append(rule.__class__(**{**rule.__dict__, "status": state.status}))
    database.dispose()
    click.echo(dump_rule_pack(pack), nl=False)


# ---------------------------------------------------------------- services
@click.group()
def services() -> None:
    """The local services directory."""


def _load_services(path: str, *, replace: bool) -> Any:
    from mecc.admin import services as service_store
    from mecc.clinical.directory import ServiceDirectoryError, load_services

    cli = _cli()
    try:
        found = load_services(cli._path(path))
    except ServiceDirectoryError as exc:
        cli._fail(str(exc))
        raise  # unreachable: _fail exits
    database = cli._database()
    with database.session() as session:
        summary = service_store.load_services(session, found, actor="cli", replace=replace)
        session.commit()
    database.dispose()
    return summary


@services.command("load")
@click.argument("path")
@click.option("--replace", is_flag=True,
              help="Replace installed services that the file describes differently.")
def services_load(path: str, replace: bool) -> None:
    """Load services from a YAML file or directory: new ids are added; an installed service
    the file describes differently is kept as it is, and listed, unless --replace."""
    summary = _load_services(path, replace=replace)
    click.echo(f"Services: {len(summary.added)} new, {len(summary.replaced)} replaced, "
               f"{len(summary.unchanged)} unchanged, {len(summary.kept)} kept as installed.")
    for service_id, changes in summary.kept:
        fields = ", ".join(sorted(changes))
        click.echo(f"{service_id}: differs from the file in {fields}; kept (--replace "
                   "replaces it).")


# ---------------------------------------------------------------- everything
@click.command("seed")
def seed() -> None:
    """Migrate; fill an empty installation from the config directory's rules and services;
    afterwards add only rules and services whose keys are new (nothing installed changes)."""
    from mecc.store.migrate import upgrade

    settings = _cli()._settings()
    upgrade(settings.database_url)
    config = Path(settings.config_dir)
    rules_done = _load_rules(str(config / "rules"), "seed", add_versions=False)
    click.echo(_rules_line(rules_done, "already installed, left as they are"))
    services_done = _load_services(str(config / "services"), replace=False)
    click.echo(f"Services: {len(services_done.added)} new, "
               f"{len(services_done.unchanged) + len(services_done.kept)} already installed, "
               "left as they are.")
