"""Value sets from published code lists: `mecc valuesets build`.

config/terminology/ holds the published lists (PCD reference sets, PRIMIS, OpenSAFELY, dm+d; one
CSV each, with MANIFEST.yaml recording where each came from) and build.yaml, the recipe: which
lists make each condition group and medicine class, and the codes added or removed locally, each
with its reason. `build` reads them and `render` writes config/valuesets.yaml, which names every
group's sources, versions and counts. An operator refreshes the value sets by replacing the CSVs
with a newer release and rebuilding; nothing outside the repository is read.

Pure domain code: files in, text out.
"""

from __future__ import annotations

import csv
import json
import re
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RECIPE = "build.yaml"
MANIFEST = "MANIFEST.yaml"
SYSTEMS = ("snomed", "icd10", "resolved")  # the code lists of a group (resolved: SNOMED CT)
_CODE_COLUMNS = ("code", "id", "dmd_id")  # dm+d lists name the code column differently
_ICD10 = re.compile(r"^([A-Z][0-9]{2})\.?([0-9A-Z]?)")


class TerminologyError(ValueError):
    """The recipe or a list is broken; the message names the file and the entry."""


@dataclass
class Built:
    """One condition group or medicine class, with where every code came from."""

    name: str
    title: str
    codes: dict[str, set[str]]  # system -> codes ("medicines" for a medicine class)
    sources: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)  # local adds and removals
    extra: dict[str, Any] = field(default_factory=dict)  # ltc, includes, implies


@dataclass
class BuildResult:
    groups: list[Built]
    medicines: list[Built]
    notes: list[str]  # what an operator should look at (a removal that matched nothing)


def icd10_entry(code: str) -> str:
    """'E11' -> 'E11'; 'E109' or 'E10.9' -> 'E10.9' (a subcategory); '' when not ICD-10."""
    match = _ICD10.match(code.strip().upper())
    if not match:
        return ""
    category, sub = match.groups()
    return f"{category}.{sub}" if sub else category


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TerminologyError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise TerminologyError(f"{path}: not valid YAML: {exc}") from exc


def read_list(path: Path) -> list[tuple[str, str]]:
    """(code, term) for every row of a published list."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            column = next((c for c in _CODE_COLUMNS if c in (reader.fieldnames or ())), None)
            if column is None:
                raise TerminologyError(f"{path}: no code column (one of {_CODE_COLUMNS})")
            term = next((c for c in ("term", "nm") if c in (reader.fieldnames or ())), None)
            return [(row[column].strip(), (row.get(term) or "") if term else "")
                    for row in reader if row[column].strip()]
    except OSError as exc:
        raise TerminologyError(f"{path}: cannot read: {exc.strerror}") from exc


def _provenance(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    entries = list(manifest.get("lists") or []) + list(manifest.get("medication_lists") or [])
    return {str(e["file"]): e for e in entries if isinstance(e, Mapping) and "file" in e}


def _source(folder: Path, file: str, system: str, used: int,
            provenance: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    meta = provenance.get(file, {})
    list_id = str(meta.get("codelist_id") or "local list (not in MANIFEST.yaml)")
    version = list_id.rsplit("/", 1)[-1] if "/" in list_id and " " not in list_id else "unknown"
    if list_id.startswith("not recorded"):  # the source kept no OpenCodelists id
        list_id = f"{Path(file).stem} (OpenCodelists id not recorded)"
    return {"list": list_id, "version": version,
            "publisher": str(meta.get("publisher") or "local"),
            "file": f"{folder.name}/{file}", "system": system, "codes": used}


@dataclass(frozen=True)
class _TermFilter:
    """Which rows of a list to take, by their term: a broad list narrowed to a group."""

    only: list[tuple[re.Pattern[str], str]]
    exclude: list[tuple[re.Pattern[str], str]]

    def keeps(self, term: str) -> bool:
        if self.only and not any(p.search(term) for p, _ in self.only):
            return False
        return not any(p.search(term) for p, _ in self.exclude)

    def changes(self) -> list[dict[str, Any]]:
        return ([{"change": "keep only", "system": "terms matching", "codes": [p.pattern],
                  "reason": r} for p, r in self.only]
                + [{"change": "remove", "system": "terms matching", "codes": [p.pattern],
                    "reason": r} for p, r in self.exclude])


class _Builder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.recipe_path = folder / RECIPE
        recipe = _read_yaml(self.recipe_path)
        if not isinstance(recipe, Mapping) or not isinstance(recipe.get("groups"), Mapping):
            raise TerminologyError(f"{self.recipe_path}: expected a mapping with 'groups'")
        self.recipe = recipe
        manifest_path = folder / MANIFEST
        self.provenance = _provenance(_read_yaml(manifest_path)) if manifest_path.exists() else {}
        self.notes: list[str] = []

    def fail(self, entry: str, message: str) -> TerminologyError:
        return TerminologyError(f"{self.recipe_path}: {entry}: {message}")

    def files(self, entry: str, raw: Any) -> list[str]:
        if raw is None:
            return []
        if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
            raise self.fail(entry, "expected a list of CSV file names")
        for name in raw:
            if not (self.folder / name).is_file():
                raise self.fail(entry, f"no such list {name!r} in {self.folder}")
        return raw

    def codes_from(self, entry: str, file: str, system: str, terms: _TermFilter) -> set[str]:
        codes: set[str] = set()
        for code, term in read_list(self.folder / file):
            if not terms.keeps(term):
                continue
            if system == "icd10":
                entry_code = icd10_entry(code)
                if not entry_code:
                    raise self.fail(entry, f"{file}: {code!r} is not an ICD-10 code")
                codes.add(entry_code)
            elif code.isdigit():
                codes.add(code)
            else:
                raise self.fail(entry, f"{file}: {code!r} is not a SNOMED CT / dm+d code")
        if system == "icd10":
            # A whole category covers its subcategories: keep a subcategory only when the list
            # does not take its whole category (E10.9 under E10 is redundant; I11.0 alone is not).
            codes = {c for c in codes if "." not in c or c.split(".")[0] not in codes}
        return codes

    def changes(self, entry: str, raw: Any, systems: tuple[str, ...]) -> list[dict[str, Any]]:
        out = []
        for index, change in enumerate(raw or []):
            where = f"{entry}[{index}]"
            if not isinstance(change, Mapping) or not change.get("reason"):
                raise self.fail(where, "each change is {system, codes, reason}; say why")
            system = str(change.get("system"))
            if system not in systems:
                raise self.fail(where, f"'system' must be one of {', '.join(systems)}")
            codes = change.get("codes")
            if not isinstance(codes, list) or not codes:
                raise self.fail(where, "'codes' is a non-empty list")
            wanted = [icd10_entry(str(c)) if system == "icd10" else str(c).strip()
                      for c in codes]
            bad = [c for c, w in zip(codes, wanted, strict=True)
                   if not w or (system != "icd10" and not w.isdigit())]
            if bad:
                raise self.fail(where, f"not {system} codes: {bad}")
            out.append({"system": system, "codes": wanted, "reason": str(change["reason"])})
        return out

    def apply(self, name: str, codes: dict[str, set[str]], adds: list[dict[str, Any]],
              removes: list[dict[str, Any]]) -> None:
        for change in removes:
            present = codes[change["system"]]
            missing = [c for c in change["codes"] if c not in present]
            if missing:
                self.notes.append(f"{name}: removal of {missing} matched nothing "
                                  "(the list changed?)")
            present.difference_update(change["codes"])
        for change in adds:
            codes[change["system"]].update(change["codes"])

    def patterns(self, entry: str, raw: Any) -> list[tuple[re.Pattern[str], str]]:
        out = []
        for item in raw or []:
            if not isinstance(item, Mapping) or not item.get("pattern") or not item.get("reason"):
                raise self.fail(entry, "each is {pattern, reason}")
            try:
                out.append((re.compile(str(item["pattern"]), re.IGNORECASE), str(item["reason"])))
            except re.error as exc:
                raise self.fail(entry, f"bad pattern: {exc}") from None
        return out

    def group(self, name: str, raw: Any) -> Built:
        entry = f"groups.{name}"
        if not isinstance(raw, Mapping):
            raise self.fail(entry, "expected a mapping")
        allowed = {"title", "ltc", "includes", "implies", "only_terms", "exclude_terms", "add",
                   "remove", *SYSTEMS}
        unknown = set(raw) - allowed
        if unknown:
            raise self.fail(entry, f"unknown keys {sorted(unknown)}")
        terms = _TermFilter(self.patterns(f"{entry}.only_terms", raw.get("only_terms")),
                            self.patterns(f"{entry}.exclude_terms", raw.get("exclude_terms")))
        codes: dict[str, set[str]] = {s: set() for s in SYSTEMS}
        sources = []
        for system in SYSTEMS:
            for file in self.files(f"{entry}.{system}", raw.get(system)):
                found = self.codes_from(entry, file, system, terms)
                codes[system] |= found
                sources.append(_source(self.folder, file, system, len(found), self.provenance))
        adds = self.changes(f"{entry}.add", raw.get("add"), SYSTEMS)
        removes = self.changes(f"{entry}.remove", raw.get("remove"), SYSTEMS)
        self.apply(name, codes, adds, removes)
        # QOF's rule: a code on the group's resolved (or remission) list ends the condition, so
        # it is never also a diagnosis code of that group ("schizophrenia in remission").
        codes["snomed"] -= codes["resolved"]
        changes = ([{"change": "add", **c} for c in adds]
                   + [{"change": "remove", **c} for c in removes]
                   + terms.changes())
        extra = {"ltc": bool(raw.get("ltc", False)), "includes": list(raw.get("includes") or []),
                 "implies": dict(raw.get("implies") or {})}
        return Built(name, str(raw.get("title") or name), codes, sources, changes, extra)

    def medicine(self, name: str, raw: Any) -> Built:
        entry = f"medicines.{name}"
        if not isinstance(raw, Mapping) or set(raw) - {"title", "dmd", "add", "remove"}:
            raise self.fail(entry, "expected {title, dmd, add?, remove?}")
        codes: dict[str, set[str]] = {"dmd": set()}
        sources = []
        for file in self.files(f"{entry}.dmd", raw.get("dmd")):
            found = self.codes_from(entry, file, "dmd", _TermFilter([], []))
            codes["dmd"] |= found
            sources.append(_source(self.folder, file, "dmd", len(found), self.provenance))
        adds = self.changes(f"{entry}.add", raw.get("add"), ("dmd",))
        removes = self.changes(f"{entry}.remove", raw.get("remove"), ("dmd",))
        self.apply(name, codes, adds, removes)
        changes = ([{"change": "add", **c} for c in adds]
                   + [{"change": "remove", **c} for c in removes])
        return Built(name, str(raw.get("title") or name), codes, sources, changes)


def build(folder: str | Path) -> BuildResult:
    """Every group and medicine class of `folder`/build.yaml, from the lists beside it."""
    builder = _Builder(Path(folder))
    groups = [builder.group(str(n), raw) for n, raw in builder.recipe["groups"].items()]
    medicines = [builder.medicine(str(n), raw)
                 for n, raw in (builder.recipe.get("medicines") or {}).items()]
    return BuildResult(groups, medicines, builder.notes)


# --------------------------------------------------------------------------------------- output

def _sorted(codes: Iterable[str]) -> list[str]:
    return sorted(codes, key=lambda c: (len(c), c))  # numeric order for SNOMED, plain for ICD


def _block(key: str, codes: Iterable[str], indent: str) -> list[str]:
    """Codes as one folded scalar: parsed many times faster than a YAML list of 10,000 items."""
    listed = _sorted(codes)
    if not listed:
        return [f"{indent}{key}: []"]
    body = textwrap.fill(" ".join(listed), 96, initial_indent=indent + "  ",
                         subsequent_indent=indent + "  ", break_on_hyphens=False)
    return [f"{indent}{key}: >-", body]


def _flow(value: Any) -> str:
    """One value on one line: JSON is YAML, and quotes every string the same way."""
    return json.dumps(value, ensure_ascii=False)


def _sources(sources: list[dict[str, Any]], indent: str) -> list[str]:
    lines = [f"{indent}sources:"]
    for s in sources:
        lines.append(f"{indent}  - {_flow(s)}")
    return lines


HEADER = """\
# GENERATED by `mecc valuesets build` from config/terminology/build.yaml and the published code
# lists beside it (provenance: config/terminology/MANIFEST.yaml). Do not edit by hand: change
# build.yaml (a list, or a code added or removed with its reason) and rebuild, so a refresh from
# a newer release keeps local changes. docs/interoperability.md lists the same, per group.
#
# Condition groups: SNOMED CT codes match exactly; ICD-10, ICD-10-UK and ICD-10-CM codes match by
# their three-character category (E11.9 -> E11), or by a four-character subcategory where a list
# takes only part of a category (I11.0). `resolved` codes end a group: the group is current only
# when its latest diagnosis code is later than its latest resolved code. `includes`: every code of
# those groups belongs to this one too. `implies`: facts a current group sets when not sent.
# `ltc: true` groups count towards condition_count().
# Medicine classes: dm+d (VMP/AMP) codes, sent as https://dmd.nhs.uk or http://snomed.info/sct.
"""


def render(result: BuildResult) -> str:
    lines = [HEADER.rstrip("\n"), "groups:"]
    for g in result.groups:
        lines += [f"  {g.name}:", f"    title: {_flow(g.title)}",
                  f"    ltc: {_flow(g.extra['ltc'])}"]
        if g.extra["includes"]:
            lines.append(f"    includes: {_flow(g.extra['includes'])}")
        if g.extra["implies"]:
            lines.append(f"    implies: {_flow(g.extra['implies'])}")
        counts = {s: len(g.codes[s]) for s in SYSTEMS}
        lines.append(f"    counts: {_flow(counts | {'local_changes': len(g.changes)})}")
        lines += _sources(g.sources, "    ")
        lines += _block("snomed", g.codes["snomed"], "    ")
        lines.append(f"    icd10: {_flow(_sorted(g.codes['icd10']))}")
        if g.codes["resolved"]:
            lines.append(f"    resolved: {_flow(_sorted(g.codes['resolved']))}")
    lines.append("medicines:")
    for m in result.medicines:
        counts = {"dmd": len(m.codes["dmd"]), "local_changes": len(m.changes)}
        lines += [f"  {m.name}:", f"    title: {_flow(m.title)}", f"    counts: {_flow(counts)}"]
        lines += _sources(m.sources, "    ")
        lines += _block("dmd", m.codes["dmd"], "    ")
    return "\n".join(lines) + "\n"


def markdown(result: BuildResult) -> str:
    """The value-set tables of docs/interoperability.md."""
    out = ["| group | SNOMED CT | ICD-10 | resolved | sources (list id/version: codes taken) |",
           "|---|---|---|---|---|"]
    for g in result.groups:
        cited = "; ".join(f"{s['list']}: {s['codes']}" for s in g.sources) or "local codes only"
        notes = []
        if g.extra["includes"]:
            notes.append("includes " + ", ".join(g.extra["includes"]))
        if g.extra["implies"]:
            notes.append("sets " + ", ".join(f"{k} = {_flow(v)}"
                                             for k, v in g.extra["implies"].items()))
        if g.changes:
            notes.append(f"{len(g.changes)} local change(s) in build.yaml")
        if notes:
            cited += " (" + "; ".join(notes) + ")"
        out.append(f"| `{g.name}` | {len(g.codes['snomed'])} | {len(g.codes['icd10'])} | "
                   f"{len(g.codes['resolved'])} | {cited} |")
    out += ["", "| medicine class | dm+d codes | sources (list id/version: codes taken) |",
            "|---|---|---|"]
    for m in result.medicines:
        cited = "; ".join(f"{s['list']}: {s['codes']}" for s in m.sources)
        out.append(f"| `{m.name}` | {len(m.codes['dmd'])} | {cited} |")
    out += ["", "Local changes (config/terminology/build.yaml), each with its reason:", ""]
    for built in [*result.groups, *result.medicines]:
        for c in built.changes:
            codes = ", ".join(f"`{code}`" for code in c["codes"])
            reason = " ".join(str(c["reason"]).split())
            out.append(f"- `{built.name}`: {c['change']} {c['system']} {codes}: {reason}")
    return "\n".join(out) + "\n"
