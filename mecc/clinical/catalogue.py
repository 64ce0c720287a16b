"""The fact catalogue and condition value sets: what events may say and what rules may read.

Pure domain code: loaded once from YAML in config/, validated at start-up, then read-only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FACT_TYPES = ("int", "double", "string", "bool")
SNOMED = "http://snomed.info/sct"
ICD10_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-uk")
CODE_SYSTEMS = (SNOMED, *ICD10_SYSTEMS)
_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")


class CatalogueError(ValueError):
    """A config file is broken; the message names the file and the entry."""


@dataclass(frozen=True)
class FactSpec:
    name: str
    type: str  # one of FACT_TYPES
    values: tuple[str, ...] | None = None  # allowed values of a string fact
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    description: str = ""
    source: str = "facts"  # "facts": sent by integrators; "event": derived from the event

    @property
    def is_sent(self) -> bool:
        """True when integrators send this fact in the event's `facts` object."""
        return self.source == "facts"


@dataclass(frozen=True)
class GroupSpec:
    name: str
    title: str
    ltc: bool
    snomed: frozenset[str]
    icd10: frozenset[str]  # three-character categories, upper case


@dataclass(frozen=True)
class Catalogue:
    facts: Mapping[str, FactSpec]
    groups: Mapping[str, GroupSpec]
    _by_code: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict, repr=False)

    @property
    def sent_facts(self) -> dict[str, FactSpec]:
        return {n: f for n, f in self.facts.items() if f.is_sent}

    @property
    def ltc_groups(self) -> frozenset[str]:
        return frozenset(g.name for g in self.groups.values() if g.ltc)

    def groups_for_code(self, system: str, code: str) -> tuple[str, ...]:
        """Condition groups a coded condition maps to (empty when it maps to none)."""
        code = code.strip()
        if system == SNOMED:
            return self._by_code.get((SNOMED, code), ())
        if system in ICD10_SYSTEMS:
            return self._by_code.get(("icd10", code.replace(".", "")[:3].upper()), ())
        return ()


def _fail(path: Path, entry: str, message: str) -> CatalogueError:
    return CatalogueError(f"{path}: {entry}: {message}")


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            # libyaml's loader when present: config is read at every start-up.
            return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path}: not valid YAML: {exc}") from exc


def _number(path: Path, entry: str, raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, entry, f"'{key}' must be a number")
    return value


def parse_facts(path: Path, data: Any) -> dict[str, FactSpec]:
    if not isinstance(data, Mapping) or not isinstance(data.get("facts"), Mapping):
        raise CatalogueError(f"{path}: expected a mapping with a 'facts' mapping")
    facts: dict[str, FactSpec] = {}
    allowed = {"type", "values", "min", "max", "unit", "description", "source"}
    for name, raw in data["facts"].items():
        entry = f"facts.{name}"
        if not isinstance(name, str) or not _SLUG.match(name):
            raise _fail(path, entry, "fact names are lower-case slugs")
        if not isinstance(raw, Mapping):
            raise _fail(path, entry, "expected a mapping")
        unknown = set(raw) - allowed
        if unknown:
            raise _fail(path, entry, f"unknown keys {sorted(unknown)}")
        ftype = raw.get("type")
        if ftype not in FACT_TYPES:
            raise _fail(path, entry, f"'type' must be one of {', '.join(FACT_TYPES)}")
        values = raw.get("values")
        if values is not None:
            if ftype != "string" or not isinstance(values, list) or not values:
                raise _fail(path, entry, "'values' is a non-empty list, for string facts only")
            if not all(isinstance(v, str) for v in values):
                raise _fail(path, entry, "'values' must all be strings")
            values = tuple(values)
        lo, hi = _number(path, entry, raw, "min"), _number(path, entry, raw, "max")
        if (lo is not None or hi is not None) and ftype not in ("int", "double"):
            raise _fail(path, entry, "'min'/'max' apply to int and double facts only")
        if lo is not None and hi is not None and lo > hi:
            raise _fail(path, entry, "'min' is greater than 'max'")
        source = raw.get("source", "facts")
        if source not in ("facts", "event"):
            raise _fail(path, entry, "'source' must be 'facts' or 'event'")
        facts[name] = FactSpec(
            name=name, type=ftype, values=values, min=lo, max=hi,
            unit=raw.get("unit"), description=str(raw.get("description", "")), source=source,
        )
    return facts


def parse_groups(path: Path, data: Any) -> dict[str, GroupSpec]:
    if not isinstance(data, Mapping) or not isinstance(data.get("groups"), Mapping):
        raise CatalogueError(f"{path}: expected a mapping with a 'groups' mapping")
    groups: dict[str, GroupSpec] = {}
    for name, raw in data["groups"].items():
        entry = f"groups.{name}"
        if not isinstance(name, str) or not _SLUG.match(name):
            raise _fail(path, entry, "group names are lower-case slugs")
        if not isinstance(raw, Mapping):
            raise _fail(path, entry, "expected a mapping")
        unknown = set(raw) - {"title", "ltc", "snomed", "icd10"}
        if unknown:
            raise _fail(path, entry, f"unknown keys {sorted(unknown)}")
        codes: dict[str, frozenset[str]] = {}
        for key in ("snomed", "icd10"):
            items = raw.get(key, [])
            if not isinstance(items, list) or not all(isinstance(c, str | int) for c in items):
                raise _fail(path, entry, f"'{key}' must be a list of codes (quote SNOMED codes)")
            codes[key] = frozenset(str(c).strip() for c in items)
        bad = [c for c in codes["snomed"] if not c.isdigit()]
        if bad:
            raise _fail(path, entry, f"SNOMED CT codes are digits: {bad}")
        bad = [c for c in codes["icd10"] if not re.fullmatch(r"[A-Z][0-9]{2}", c)]
        if bad:
            raise _fail(path, entry, f"ICD-10 entries are three-character categories: {bad}")
        groups[name] = GroupSpec(
            name=name, title=str(raw.get("title", name)), ltc=bool(raw.get("ltc", False)),
            snomed=codes["snomed"], icd10=codes["icd10"],
        )
    return groups


def build_catalogue(facts: Mapping[str, FactSpec], groups: Iterable[GroupSpec]) -> Catalogue:
    by_code: dict[tuple[str, str], list[str]] = {}
    group_map = {}
    for group in groups:
        group_map[group.name] = group
        for code in group.snomed:
            by_code.setdefault((SNOMED, code), []).append(group.name)
        for code in group.icd10:
            by_code.setdefault(("icd10", code), []).append(group.name)
    return Catalogue(
        facts=dict(facts), groups=group_map,
        _by_code={k: tuple(sorted(v)) for k, v in by_code.items()},
    )


def load_catalogue(config_dir: str | Path) -> Catalogue:
    """Load and validate config/facts.yaml and config/valuesets.yaml."""
    config_dir = Path(config_dir)
    facts_path, groups_path = config_dir / "facts.yaml", config_dir / "valuesets.yaml"
    facts = parse_facts(facts_path, _read_yaml(facts_path))
    groups = parse_groups(groups_path, _read_yaml(groups_path))
    return build_catalogue(facts, groups.values())
