"""Condition -> a coded condition of the event (SNOMED CT, ICD-10, ICD-10-UK, ICD-10-CM): current
and confirmed only, at most a few entries per code, none dated after the contact.

A smoking finding sent as a Condition (449868002 "Smokes tobacco daily", an ex-smoker code) is
a smoking status, not a disease: it is offered as `smoking_status` (smoking.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mecc.clinical.catalogue import CODE_SYSTEMS
from mecc.clinical.recency import after_contact
from mecc.interop.fhir.codes import CONDITION_CLINICAL, CONDITION_VERIFICATION, SNOMED
from mecc.interop.fhir.context import MappingContext
from mecc.interop.fhir.datatypes import coding_key, codings, parse_datetime
from mecc.interop.fhir.model import Located, Origin
from mecc.interop.fhir.patient import about_the_patient
from mecc.interop.fhir.smoking import smoking_code

ACTIVE_CLINICAL_STATUSES = ("active", "recurrence", "relapse")
UNUSABLE_VERIFICATION = ("unconfirmed", "provisional", "differential", "refuted",
                         "entered-in-error")
SNOMED_CODE = re.compile(r"^[1-9][0-9]{5,17}$")
ICD10_CODE = re.compile(r"^[A-Za-z][0-9]{2}(\.?[0-9A-Za-z]{1,4})?$")


@dataclass
class Coded:
    """One usable Condition: the event's condition item and where it came from."""

    item: dict[str, Any]
    loc: Located
    index: int  # the coding used
    onset_element: str | None
    grouped: bool  # maps to a condition group, or resolves one


def reads(ctx: MappingContext, cond: Mapping[str, Any]) -> bool:
    """True when the mapping would use this Condition for a group or a smoking status (a
    defect in it then refuses the request; in any other Condition it is only reported)."""
    for _, coding in codings(cond.get("code")):
        system, code = coding_key(coding)
        if system in CODE_SYSTEMS and (ctx.catalogue.groups_for_code(system, code)
                                       or ctx.catalogue.groups_resolved_by(system, code)):
            return True
        if smoking_code(ctx, system, code) is not None:
            return True
    return False


def map_condition(ctx: MappingContext, loc: Located) -> Coded | None:
    """The event's condition, or None (the reason is in `ignored`) when it is not used."""
    cond = loc.resource
    if not about_the_patient(ctx, loc) or not _current(ctx, loc):
        return None
    dated, late = _dated(ctx, loc)
    if late:
        return None
    for i, coding in codings(cond.get("code")):
        system, code = coding_key(coding)
        status = smoking_code(ctx, system, code)
        if status is not None:
            when = parse_datetime(dated[0]) if dated else None
            ctx.offer("smoking_status", status, when, loc, f"code.coding[{i}]",
                      note="a smoking finding sent as a Condition")
            return None
    concept = cond.get("code")
    usable: list[tuple[int, Mapping[str, Any]]] = []
    for i, coding in codings(concept):
        system, code = coding_key(coding)
        if system not in CODE_SYSTEMS:
            ctx.ignore(loc, f"Code system {system or '(none)'} is not used (SNOMED CT "
                       "and ICD-10 are).", f"code.coding[{i}]")
        elif not (SNOMED_CODE if system == SNOMED else ICD10_CODE).match(code):
            ctx.ignore(loc, f"'{code}' is not a valid {system} code.", f"code.coding[{i}]")
        else:
            usable.append((i, coding))
    if not usable:
        ctx.ignore(loc, "No SNOMED CT or ICD-10 coding to map to a condition group.",
                   "code")
        return None

    def rank(entry: tuple[int, Mapping[str, Any]]) -> tuple[int, int, int]:
        system, code = coding_key(entry[1])
        grouped = bool(ctx.catalogue.groups_for_code(system, code))
        return (0 if grouped else 1, 0 if system == SNOMED else 1, entry[0])

    usable.sort(key=rank)
    index, chosen = usable[0]
    for i, _ in usable[1:]:
        ctx.ignore(loc, f"Another coding of this Condition was used "
                   f"(code.coding[{index}]).", f"code.coding[{i}]")
    system, code = coding_key(chosen)
    item: dict[str, Any] = {"system": system, "code": code}
    display = _display(chosen, concept if isinstance(concept, Mapping) else {})
    if display:
        item["display"] = display
    onset = _onset(ctx, loc)
    if onset:
        item["onset_date"] = onset[0]
    grouped = bool(ctx.catalogue.groups_for_code(system, code)
                   or ctx.catalogue.groups_resolved_by(system, code))
    return Coded(item, loc, index, onset[1] if onset else None, grouped)


def _current(ctx: MappingContext, loc: Located) -> bool:
    cond = loc.resource
    clinical = [c.get("code") for _, c in codings(cond.get("clinicalStatus"))
                if c.get("system") in (CONDITION_CLINICAL, None)]
    if clinical and not any(c in ACTIVE_CLINICAL_STATUSES for c in clinical):
        ctx.ignore(loc, f"clinicalStatus is {', '.join(map(str, clinical))}, not active.",
                   "clinicalStatus")
        return False
    if not clinical and any(k.startswith("abatement") for k in cond):
        ctx.ignore(loc, "No clinicalStatus, and it has abated.", "abatement[x]")
        return False
    verification = [c.get("code") for _, c in codings(cond.get("verificationStatus"))
                    if c.get("system") in (CONDITION_VERIFICATION, None)]
    bad = [v for v in verification if v in UNUSABLE_VERIFICATION]
    if bad:
        ctx.ignore(loc, f"verificationStatus is {bad[0]}; only confirmed conditions are "
                   "used.", "verificationStatus")
        return False
    return True


def _dated(ctx: MappingContext, loc: Located) -> tuple[tuple[str, str] | None, bool]:
    """((date, element) the Condition is dated by: its onset, else when it was recorded; None
    when undated), and whether that is after the contact (reported: not known then)."""
    cond = loc.resource
    found: tuple[str, str] | None = None
    for element, raw in (("onsetDateTime", cond.get("onsetDateTime")),
                         ("onsetPeriod.start", cond.get("onsetPeriod", {}).get("start")
                          if isinstance(cond.get("onsetPeriod"), Mapping) else None),
                         ("recordedDate", cond.get("recordedDate"))):
        if isinstance(raw, str) and parse_datetime(raw) is not None:
            found = (raw, element)
            break
    if found is None or ctx.occurred is None:
        return found, False
    moment = parse_datetime(found[0])
    # A date alone is compared by day: a diagnosis made during the contact is a fact of it.
    if moment is not None and after_contact(moment.date() if len(found[0]) <= 10 else moment,
                                            ctx.occurred):
        ctx.ignore(loc, f"It is dated after the contact ({found[1]} {found[0]}).", found[1])
        return found, True
    return found, False


def _onset(ctx: MappingContext, loc: Located) -> tuple[str, str] | None:
    cond = loc.resource
    raw = cond.get("onsetDateTime")
    element = "onsetDateTime"
    if raw is None and isinstance(cond.get("onsetPeriod"), Mapping):
        raw, element = cond["onsetPeriod"].get("start"), "onsetPeriod.start"
    if not isinstance(raw, str):
        other = [k for k in cond if k.startswith("onset") and k not in (
            "onsetDateTime", "onsetPeriod")]
        if other:
            ctx.ignore(loc, f"{other[0]} is not read; only onsetDateTime and "
                       "onsetPeriod.start give an onset date.", other[0])
        return None
    if len(raw) < 10:
        ctx.ignore(loc, "The onset date is partial; it is not sent.", element)
        return None
    return raw[:10], element


def _display(coding: Mapping[str, Any], concept: Mapping[str, Any]) -> str | None:
    text = coding.get("display") or concept.get("text")
    return str(text)[:500] if isinstance(text, str) and text.strip() else None


def finish_conditions(ctx: MappingContext, found: list[Coded], limit: int
                      ) -> list[dict[str, Any]]:
    """The event's conditions: per code the earliest and the latest dated entry (the onset,
    and what QOF's resolved-code rule compares) and one undated entry if any was undated;
    the rest reported as duplicates. At most `limit` distinct codes: codes in a condition
    group first, so only codes no rule reads are left out when a record has more."""
    by_code: dict[tuple[str, str], list[Coded]] = {}
    for coded in found:
        by_code.setdefault((coded.item["system"], coded.item["code"]), []).append(coded)
    order = sorted(by_code, key=lambda k: (not by_code[k][0].grouped,
                                           found.index(by_code[k][0])))
    kept_codes = order[:limit]
    for key in order[limit:]:
        for coded in by_code[key]:
            ctx.ignore(coded.loc, f"Over the limit of {limit} distinct condition codes, and "
                       "in no condition group (no rule reads it).",
                       f"code.coding[{coded.index}]")
    out: list[dict[str, Any]] = []
    for key in sorted(kept_codes, key=lambda k: found.index(by_code[k][0])):
        entries = by_code[key]
        dated = sorted((c for c in entries if "onset_date" in c.item),
                       key=lambda c: c.item["onset_date"])
        keep = dated[:1] + dated[-1:]
        undated = [c for c in entries if "onset_date" not in c.item]
        if undated:
            keep.append(undated[0])
        unique: list[Coded] = []
        for c in keep:
            if all(c.item != u.item for u in unique):
                unique.append(c)
        for coded in entries:
            if not any(coded is u for u in unique):
                first = unique[0]
                ctx.ignore(coded.loc, f"The same code as {first.loc.ref} "
                           f"({key[0]}|{key[1]}): one entry per code and date is kept.",
                           f"code.coding[{coded.index}]")
        for coded in unique:
            _report(ctx, coded, len(out))
            out.append(coded.item)
    return out


def _report(ctx: MappingContext, coded: Coded, position: int) -> None:
    loc = coded.loc
    ctx.result.provenance[f"conditions.{position}"] = Origin(
        loc.ref, loc.at(f"code.coding[{coded.index}]"))
    if coded.onset_element:
        ctx.result.provenance[f"conditions.{position}.onset_date"] = Origin(
            loc.ref, loc.at(coded.onset_element))
    groups = list(ctx.catalogue.groups_for_code(coded.item["system"], coded.item["code"]))
    ctx.result.mapped.append({"condition": dict(coded.item), "groups": groups,
                              "from": loc.ref, "element": f"code.coding[{coded.index}]"})
