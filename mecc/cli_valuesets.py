"""`mecc valuesets`: rebuild config/valuesets.yaml from the published code lists."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def valuesets() -> None:
    """Condition value sets and medicine classes, from the lists in config/terminology/."""


def _config_dir(raw: str | None) -> Path:
    if raw:
        return Path(raw)
    from mecc.platform.settings import Settings

    return Path(Settings.from_env().config_dir)


@valuesets.command("build")
@click.option("--config", "config", default=None,
              help="The config directory (default: MECC_CONFIG_DIR); reads terminology/ in it.")
@click.option("--check", is_flag=True,
              help="Write nothing; fail when valuesets.yaml is not what the lists build.")
@click.option("--docs", is_flag=True, help="Also print the tables for docs/interoperability.md.")
def valuesets_build(config: str | None, check: bool, docs: bool) -> None:
    """Build valuesets.yaml from terminology/build.yaml and the CSV lists beside it."""
    from mecc.clinical.catalogue import CatalogueError, load_catalogue
    from mecc.clinical.terminology import TerminologyError, build, markdown, render

    folder = _config_dir(config)
    target = folder / "valuesets.yaml"
    try:
        result = build(folder / "terminology")
    except TerminologyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    text = render(result)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            click.echo(f"{target} is out of date: run `mecc valuesets build`", err=True)
            sys.exit(1)
        click.echo(f"{target} is up to date")
        return
    previous = target.read_text(encoding="utf-8") if target.exists() else None
    target.write_text(text, encoding="utf-8")
    try:
        load_catalogue(folder)  # the new file must load, or the old one goes back
    except CatalogueError as exc:
        if previous is not None:
            target.write_text(previous, encoding="utf-8")
        click.echo(f"error: the built value sets do not load: {exc}", err=True)
        sys.exit(1)
    codes = sum(len(c) for g in result.groups for c in g.codes.values())
    medicines = sum(len(m.codes["dmd"]) for m in result.medicines)
    click.echo(f"wrote {target}: {len(result.groups)} groups ({codes} codes), "
               f"{len(result.medicines)} medicine classes ({medicines} codes)")
    if docs:
        click.echo(markdown(result))
