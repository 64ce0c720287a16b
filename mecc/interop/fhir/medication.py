"""MedicationStatement / MedicationRequest (active or on hold) -> the event's current
`medications`.

The medicine is its medicationCodeableConcept, or the Medication its medicationReference names
(contained in it, or in the request by fullUrl or type/id). dm+d (https://dmd.nhs.uk) and SNOMED
CT codes are sent on; the value sets map them to medicine classes (diabetes, hypertension) so
that a person being treated is never offered the prevention prompt their treatment contradicts.
Other code systems (RxNorm) are reported: no published list maps them to those classes here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mecc.clinical.catalogue import MEDICATION_SYSTEMS
from mecc.clinical.recency import after_contact
from mecc.interop.fhir.context import MappingContext
from mecc.interop.fhir.datatypes import coding_key, codings, describe_codes, parse_datetime
from mecc.interop.fhir.model import Located, Origin
from mecc.interop.fhir.patient import about_the_patient

# "on-hold": the medicine is paused, not stopped; the person is still being treated for the
# condition, and a prompt its treatment contradicts would be wrong (RULE-PACK.md, "Absence").
CURRENT_STATUSES = {"MedicationStatement": ("active", "on-hold"),
                    "MedicationRequest": ("active", "on-hold")}
DMD_CODE_MAX = 18


@dataclass
class Medicine:
    item: dict[str, Any]
    loc: Located
    element: str  # where the code was read (in `source`)
    source: Located  # the resource the code is in (the Medication, or the statement itself)
    classes: tuple[str, ...]


def medicine_concept(ctx: MappingContext, loc: Located) -> tuple[Any, Located, str] | None:
    """(the medicine's CodeableConcept, the resource it is in, its element), or None."""
    node = loc.resource
    if "medicationCodeableConcept" in node:
        return node["medicationCodeableConcept"], loc, "medicationCodeableConcept"
    ref = node.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, Mapping) else None
    if isinstance(target, str):
        found = medicine_source(ctx, loc)
        if found is not None:
            return found.resource.get("code"), found, "code"
        ctx.ignore(loc, f"medicationReference {target} is not a Medication in this request.",
                   "medicationReference")
        return None
    ctx.ignore(loc, "No medicationCodeableConcept or medicationReference.", "medication[x]")
    return None


def medicine_source(ctx: MappingContext, loc: Located) -> Located | None:
    """The Medication a statement's medicationReference names in this request, if any."""
    ref = loc.resource.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, Mapping) else None
    if isinstance(target, str) and target.startswith("#"):
        # A contained Medication (`#med1`), as many systems send a prescription's medicine.
        for i, inner in enumerate(loc.resource.get("contained") or ()):
            if isinstance(inner, Mapping) and inner.get("resourceType") == "Medication" \
                    and inner.get("id") == target[1:]:
                return Located(inner, loc.at(f"contained[{i}]"))
        return None
    found = ctx.resolve(target) if isinstance(target, str) else None
    return found if found is not None and found.type == "Medication" else None


def reads(ctx: MappingContext, loc: Located) -> bool:
    """True when the medicine is in a medicine class (a defect then refuses the request)."""
    concept = loc.resource.get("medicationCodeableConcept")
    if concept is None:
        source = medicine_source(ctx, loc)
        concept = source.resource.get("code") if source is not None else None
    return any(ctx.catalogue.medicine_classes_for_code(*coding_key(c))
               for _, c in codings(concept))


def map_medication(ctx: MappingContext, loc: Located) -> Medicine | None:
    """A current medicine of the person, or None (the reason is in `ignored`)."""
    node = loc.resource
    status = node.get("status")
    if status not in CURRENT_STATUSES[loc.type]:
        ctx.ignore(loc, f"status '{status}' is not a current medicine (active, "
                   "on-hold).", "status")
        return None
    if not about_the_patient(ctx, loc):
        return None
    period = node.get("effectivePeriod")
    end = period.get("end") if isinstance(period, Mapping) else None
    ended = parse_datetime(end) if isinstance(end, str) else None
    if ended is not None and ctx.occurred is not None and ended < ctx.occurred:
        ctx.ignore(loc, f"It ended before the contact ({end}).", "effectivePeriod.end")
        return None
    started = node.get("authoredOn") or node.get("effectiveDateTime")
    start = parse_datetime(started) if isinstance(started, str) else None
    if start is not None and ctx.occurred is not None and after_contact(start, ctx.occurred):
        ctx.ignore(loc, "It was started after the contact.", "authoredOn")
        return None
    found = medicine_concept(ctx, loc)
    if found is None:
        return None
    concept, source, element = found
    usable = [(i, c) for i, c in codings(concept)
              if coding_key(c)[0] in MEDICATION_SYSTEMS and coding_key(c)[1].isdigit()
              and 6 <= len(coding_key(c)[1]) <= DMD_CODE_MAX]
    if not usable:
        ctx.ignore(loc, "No dm+d or SNOMED CT coding of the medicine "
                   f"({describe_codes(concept)}); other code systems (RxNorm) are not "
                   "mapped to medicine classes.", element if source is loc else
                   "medicationReference")
        return None
    index, coding = max(usable, key=lambda ic: (
        bool(ctx.catalogue.medicine_classes_for_code(*coding_key(ic[1]))), -ic[0]))
    system, code = coding_key(coding)
    item: dict[str, Any] = {"system": system, "code": code}
    display = coding.get("display") or (concept.get("text") if isinstance(concept, Mapping)
                                        else None)
    if isinstance(display, str) and display.strip():
        item["display"] = display.strip()[:500]
    return Medicine(item, loc, f"{element}.coding[{index}]", source,
                    ctx.catalogue.medicine_classes_for_code(system, code))


def finish_medications(ctx: MappingContext, found: list[Medicine], limit: int
                       ) -> list[dict[str, Any]]:
    """One entry per code; at most `limit`, those in a medicine class first."""
    by_code: dict[tuple[str, str], list[Medicine]] = {}
    for med in found:
        by_code.setdefault((med.item["system"], med.item["code"]), []).append(med)
    order = sorted(by_code, key=lambda k: (not by_code[k][0].classes,
                                           found.index(by_code[k][0])))
    out: list[dict[str, Any]] = []
    for n, key in enumerate(order):
        first, *again = by_code[key]
        if n >= limit:
            ctx.ignore(first.loc, f"Over the limit of {limit} medicines, and in no medicine "
                       "class (no rule reads it).", first.element)
            continue
        for med in again:
            ctx.ignore(med.loc, f"The same medicine as {first.loc.ref}.", med.element)
        position = len(out)
        ctx.result.provenance[f"medications.{position}"] = Origin(
            first.source.ref, first.source.at(first.element))
        ctx.result.mapped.append({"medication": dict(first.item),
                                  "classes": list(first.classes), "from": first.loc.ref,
                                  "element": first.element})
        out.append(first.item)
    return out
