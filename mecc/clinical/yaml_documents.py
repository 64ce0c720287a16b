"""YAML documents that hold a list of uniquely keyed entries: the rule pack and the services.

Both are kept as one file or a directory of files, read the same way and checked the same way
(each entry parsed on its own so that every bad one is reported, keys unique within a document
and across files). The error type is the caller's: `error(errors, source=...)`, where `errors`
is a list of `{"path": ..., "message": ...}` and the error keeps them in its `errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def yaml_files(path: Path) -> list[Path]:
    """`path` itself, or the *.yaml and *.yml files of a directory in name order."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def read_yaml_files(path: str | Path, error: type[ValueError], *,
                    positions: bool) -> Iterator[tuple[str, Any]]:
    """Each file's name and parsed document; `positions` adds line and column to YAML errors."""
    for file in yaml_files(Path(path)):
        try:
            with file.open(encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except OSError as exc:
            raise error([{"path": "", "message": f"Cannot read: {exc.strerror}."}],
                        source=str(file)) from exc  # type: ignore[call-arg]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) if positions else None
            where = {"line": mark.line + 1, "column": mark.column + 1} if mark else {}
            raise error([{"path": "", "message": f"Not valid YAML: {exc}", **where}],
                        source=str(file)) from exc  # type: ignore[call-arg]
        yield str(file), data


def parse_entries(entries: list[Any], parse: Callable[[Any, str], T], error: type[ValueError],
                  *, list_name: str, key: str, errors: list[dict[str, Any]]) -> list[T]:
    """Parse `entries` (the document's `list_name` list), adding each problem to `errors`.

    An entry that fails to parse or repeats an earlier entry's `key` is left out.
    """
    parsed: list[T] = []
    first_seen: dict[Any, int] = {}
    for i, raw in enumerate(entries):
        try:
            item = parse(raw, f"{list_name}.{i}")
        except error as exc:
            errors.extend(exc.errors)  # type: ignore[attr-defined]
            continue
        value = getattr(item, key)
        if value in first_seen:
            errors.append({"path": f"{list_name}.{i}.{key}",
                           "message": f"Duplicate {key} '{value}' "
                                      f"(also {list_name}.{first_seen[value]})."})
            continue
        first_seen[value] = i
        parsed.append(item)
    return parsed


def load_entries(path: str | Path, parse_document: Callable[[Any, str], list[T]],
                 error: type[ValueError], *, list_name: str, key: str,
                 positions: bool) -> list[T]:
    """Every file's entries, in file order; a key may appear in only one file."""
    loaded: list[T] = []
    origin: dict[Any, str] = {}
    for file, data in read_yaml_files(path, error, positions=positions):
        for item in parse_document(data, file):
            value = getattr(item, key)
            if value in origin:
                message = f"Duplicate {key} '{value}' (also in {origin[value]})."
                raise error([{"path": list_name, "message": message}],
                            source=file)  # type: ignore[call-arg]
            origin[value] = file
            loaded.append(item)
    return loaded
