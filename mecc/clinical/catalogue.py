"""The fact catalogue, condition value sets and medicine classes: what events may say and what
rules may read.

Pure domain code: loaded once from YAML in config/, validated at start-up, then read-only. The
value sets (config/valuesets.yaml) are built from published code lists by `mecc valuesets
build` (mecc.clinical.terminology); they are large, so codes are held as one text block per list
and indexed in dicts and sets once, here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

FACT_TYPES = ("int", "double", "string", "bool")
SNOMED = "http://snomed.info/sct"
DMD = "https://dmd.nhs.uk"
ICD10_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-uk",
                 "http://hl7.org/fhir/sid/icd-10-cm")
CODE_SYSTEMS = (SNOMED, *ICD10_SYSTEMS)
MEDICATION_SYSTEMS = (DMD, SNOMED)  # dm+d codes are SNOMED CT identifiers
_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")
_ICD10_ENTRY = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z])?$")  # category, or a subcategory


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
    # A value recorded longer ago than this at the contact is not used (RULE-PACK.md, Recency).
    max_age_days: int | None = None

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
    icd10: frozenset[str]  # three-character categories (E11), or subcategories (I11.0)
    resolved: frozenset[str] = frozenset()  # SNOMED CT codes that end the condition
    includes: tuple[str, ...] = ()  # groups whose every code belongs to this one too
    implies: Mapping[str, Any] = field(default_factory=dict)  # facts set when not sent
    sources: tuple[Mapping[str, Any], ...] = ()  # the published lists it was built from


@dataclass(frozen=True)
class MedicineClass:
    name: str
    title: str
    codes: frozenset[str]  # dm+d (VMP / AMP) concept ids
    sources: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Catalogue:
    facts: Mapping[str, FactSpec]
    groups: Mapping[str, GroupSpec]
    medicines: Mapping[str, MedicineClass] = field(default_factory=dict)
    _by_code: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict, repr=False)
    _resolves: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _medicine_by_code: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _within: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    # Groups that imply facts, in value-set order (read for every contact: kept short).
    implying_groups: tuple[GroupSpec, ...] = field(default=(), repr=False)

    @property
    def sent_facts(self) -> dict[str, FactSpec]:
        return {n: f for n, f in self.facts.items() if f.is_sent}

    @property
    def ltc_groups(self) -> frozenset[str]:
        return frozenset(g.name for g in self.groups.values() if g.ltc)

    def groups_for_code(self, system: str, code: str) -> tuple[str, ...]:
        """Condition groups a coded diagnosis maps to (empty when it maps to none)."""
        code = code.strip()
        if system == SNOMED:
            return self._by_code.get((SNOMED, code), ())
        if system in ICD10_SYSTEMS:
            flat = code.replace(".", "").upper()
            category = self._by_code.get(("icd10", flat[:3]), ())
            if len(flat) < 4:
                return category
            sub = self._by_code.get(("icd10", f"{flat[:3]}.{flat[3]}"), ())
            return tuple(sorted(set(category) | set(sub))) if sub else category
        return ()

    def groups_resolved_by(self, system: str, code: str) -> tuple[str, ...]:
        """Condition groups a code marks as resolved ("Diabetes resolved": the diabetes groups)."""
        return self._resolves.get(code.strip(), ()) if system == SNOMED else ()

    def with_including_groups(self, names: Iterable[str]) -> tuple[str, ...]:
        """`names` and every group that includes one of them (diabetes_type2 -> diabetes_any)."""
        out = set(names)
        for name in list(out):
            out.update(self._within.get(name, ()))
        return tuple(sorted(out))

    def medicine_classes_for_code(self, system: str, code: str) -> tuple[str, ...]:
        if system not in MEDICATION_SYSTEMS:
            return ()
        return self._medicine_by_code.get(code.strip(), ())


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
    allowed = {"type", "values", "min", "max", "unit", "description", "source", "max_age_days"}
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
        max_age = raw.get("max_age_days")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)
                                    or max_age < 0):
            raise _fail(path, entry, "'max_age_days' must be a whole number of days, 0 or more")
        if max_age is not None and source != "facts":
            raise _fail(path, entry, "'max_age_days' applies to sent facts only")
        facts[name] = FactSpec(
            name=name, type=ftype, values=values, min=lo, max=hi,
            unit=raw.get("unit"), description=str(raw.get("description", "")), source=source,
            max_age_days=max_age,
        )
    return facts


def _codes(path: Path, entry: str, raw: Any, key: str) -> frozenset[str]:
    """A code list: a YAML list, or one whitespace-separated text block (the built files)."""
    items = raw.get(key, [])
    if isinstance(items, str):
        return frozenset(items.split())
    if not isinstance(items, list) or not all(isinstance(c, str | int) for c in items):
        raise _fail(path, entry, f"'{key}' must be a list of codes (quote SNOMED codes)")
    return frozenset(str(c).strip() for c in items)


def _digits(path: Path, entry: str, codes: frozenset[str], what: str) -> None:
    bad = sorted(c for c in codes if not c.isdigit())
    if bad:
        raise _fail(path, entry, f"{what} codes are digits: {bad[:5]}")


def _sources(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    return tuple(s for s in raw.get("sources") or () if isinstance(s, Mapping))


_GROUP_KEYS = {"title", "ltc", "snomed", "icd10", "resolved", "includes", "implies", "sources",
               "counts"}


def parse_groups(path: Path, data: Any,
                 facts: Mapping[str, FactSpec] | None = None) -> dict[str, GroupSpec]:
    if not isinstance(data, Mapping) or not isinstance(data.get("groups"), Mapping):
        raise CatalogueError(f"{path}: expected a mapping with a 'groups' mapping")
    groups: dict[str, GroupSpec] = {}
    for name, raw in data["groups"].items():
        entry = f"groups.{name}"
        if not isinstance(name, str) or not _SLUG.match(name):
            raise _fail(path, entry, "group names are lower-case slugs")
        if not isinstance(raw, Mapping):
            raise _fail(path, entry, "expected a mapping")
        unknown = set(raw) - _GROUP_KEYS
        if unknown:
            raise _fail(path, entry, f"unknown keys {sorted(unknown)}")
        snomed, resolved = _codes(path, entry, raw, "snomed"), _codes(path, entry, raw, "resolved")
        _digits(path, entry, snomed, "SNOMED CT")
        _digits(path, entry, resolved, "resolved (SNOMED CT)")
        icd10 = frozenset(c.upper() for c in _codes(path, entry, raw, "icd10"))
        bad = sorted(c for c in icd10 if not _ICD10_ENTRY.match(c))
        if bad:
            raise _fail(path, entry, "ICD-10 entries are three-character categories (E11) or "
                        f"subcategories (I11.0): {bad}")
        includes = raw.get("includes") or []
        if not isinstance(includes, list) or not all(isinstance(g, str) for g in includes):
            raise _fail(path, entry, "'includes' must be a list of group names")
        implies = raw.get("implies") or {}
        if not isinstance(implies, Mapping):
            raise _fail(path, entry, "'implies' must map facts to values")
        if facts is not None:
            _check_implies(path, entry, implies, facts)
        groups[name] = GroupSpec(
            name=name, title=str(raw.get("title", name)), ltc=bool(raw.get("ltc", False)),
            snomed=snomed, icd10=icd10, resolved=resolved, includes=tuple(includes),
            implies=dict(implies), sources=_sources(raw),
        )
    for group in groups.values():
        missing = [g for g in group.includes if g not in groups]
        if missing:
            raise _fail(path, f"groups.{group.name}", f"'includes' names unknown groups {missing}")
    return groups


def _check_implies(path: Path, entry: str, implies: Mapping[str, Any],
                   facts: Mapping[str, FactSpec]) -> None:
    for fact, value in implies.items():
        spec = facts.get(fact)
        if spec is None or not spec.is_sent:
            raise _fail(path, entry, f"'implies' names {fact!r}, which is not a sent fact")
        kinds = {"bool": bool, "string": str, "int": int, "double": int | float}
        if not isinstance(value, kinds[spec.type]) or (spec.type != "bool"
                                                       and isinstance(value, bool)):
            raise _fail(path, entry, f"'implies' gives {fact} a value of the wrong type")
        if spec.values and value not in spec.values:
            raise _fail(path, entry, f"'implies' gives {fact} {value!r}, not one of its values")


def parse_medicines(path: Path, data: Any) -> dict[str, MedicineClass]:
    raw_classes = data.get("medicines") if isinstance(data, Mapping) else None
    if raw_classes is None:
        return {}
    if not isinstance(raw_classes, Mapping):
        raise CatalogueError(f"{path}: 'medicines' must be a mapping")
    classes: dict[str, MedicineClass] = {}
    for name, raw in raw_classes.items():
        entry = f"medicines.{name}"
        if not isinstance(name, str) or not _SLUG.match(name):
            raise _fail(path, entry, "medicine class names are lower-case slugs")
        if not isinstance(raw, Mapping) or set(raw) - {"title", "dmd", "sources", "counts"}:
            raise _fail(path, entry, "expected a mapping with title, dmd (and sources, counts)")
        codes = _codes(path, entry, raw, "dmd")
        _digits(path, entry, codes, "dm+d")
        classes[name] = MedicineClass(name, str(raw.get("title", name)), codes, _sources(raw))
    return classes


def _effective(groups: Mapping[str, GroupSpec]) -> dict[str, GroupSpec]:
    """Each group with the codes of the groups it includes (transitively) merged in."""
    def members(name: str, seen: tuple[str, ...]) -> list[GroupSpec]:
        if name in seen:
            raise CatalogueError(f"groups.{name}: 'includes' goes round in a circle: "
                                 f"{' -> '.join((*seen, name))}")
        group = groups[name]
        found = [group]
        for inner in group.includes:
            found += members(inner, (*seen, name))
        return found

    out = {}
    for name, group in groups.items():
        parts = members(name, ())
        out[name] = replace(
            group, snomed=frozenset().union(*(p.snomed for p in parts)),
            icd10=frozenset().union(*(p.icd10 for p in parts)),
            resolved=frozenset().union(*(p.resolved for p in parts)))
    return out


def build_catalogue(facts: Mapping[str, FactSpec], groups: Iterable[GroupSpec],
                    medicines: Iterable[MedicineClass] = ()) -> Catalogue:
    group_map = _effective({group.name: group for group in groups})
    by_code: dict[tuple[str, str], list[str]] = {}
    resolves: dict[str, list[str]] = {}
    within: dict[str, list[str]] = {}
    for group in group_map.values():
        for code in group.snomed:
            by_code.setdefault((SNOMED, code), []).append(group.name)
        for code in group.icd10:
            by_code.setdefault(("icd10", code), []).append(group.name)
        for code in group.resolved:
            resolves.setdefault(code, []).append(group.name)
    for other in group_map.values():
        for name in _included_names(other, group_map):
            within.setdefault(name, []).append(other.name)
    by_medicine: dict[str, list[str]] = {}
    medicine_map = {m.name: m for m in medicines}
    for medicine in medicine_map.values():
        for code in medicine.codes:
            by_medicine.setdefault(code, []).append(medicine.name)
    return Catalogue(
        facts=dict(facts), groups=group_map, medicines=medicine_map,
        _by_code={k: tuple(sorted(v)) for k, v in by_code.items()},
        _resolves={k: tuple(sorted(v)) for k, v in resolves.items()},
        _medicine_by_code={k: tuple(sorted(v)) for k, v in by_medicine.items()},
        _within={k: tuple(sorted(v)) for k, v in within.items()},
        implying_groups=tuple(g for g in group_map.values() if g.implies),
    )


def _included_names(group: GroupSpec, groups: Mapping[str, GroupSpec]) -> set[str]:
    names: set[str] = set()
    pending = list(group.includes)
    while pending:
        name = pending.pop()
        if name not in names:
            names.add(name)
            pending.extend(groups[name].includes)
    return names


def load_catalogue(config_dir: str | Path) -> Catalogue:
    """Load and validate config/facts.yaml and config/valuesets.yaml (groups and medicines)."""
    config_dir = Path(config_dir)
    facts_path, groups_path = config_dir / "facts.yaml", config_dir / "valuesets.yaml"
    facts = parse_facts(facts_path, _read_yaml(facts_path))
    data = _read_yaml(groups_path)
    groups = parse_groups(groups_path, data, facts)
    medicines = parse_medicines(groups_path, data)
    return build_catalogue(facts, groups.values(), medicines.values())
