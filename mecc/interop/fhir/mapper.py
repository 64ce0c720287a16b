"""The mapping of a set of located resources to one contact event, resource by resource.

One Patient and one Encounter are required; Conditions, Observations and current medicines add
conditions, facts and medications; anything else is reported as unused. When several values
are offered for one fact, the latest wins (then the more direct: a total over a sum of items);
a value older than its fact's maximum age at the contact is not used (RULE-PACK.md, Recency),
and the others are reported. The event carries `fact_dates`, so a prompt says what it rests on.

Tolerance: a resource is checked only as far as the mapping reads it. A defect in a resource
the mapping would use (the Patient, the Encounter, an Observation with a code in the tables, a
Condition in a condition group, a medicine in a medicine class) refuses the request with 422; in
any other resource it is reported in `ignored` (with the element and why) and that resource is
left out, so one malformed sodium result never costs the person their prompts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from mecc.clinical.catalogue import Catalogue
from mecc.clinical.recency import judge
from mecc.intake.schemas import MAX_CONDITIONS, MAX_MEDICATIONS
from mecc.interop.fhir import condition, medication, observation
from mecc.interop.fhir.body import derive_bmi
from mecc.interop.fhir.checker import Checker
from mecc.interop.fhir.context import Candidate, MappingContext
from mecc.interop.fhir.encounter import map_encounter
from mecc.interop.fhir.ethnicity import finish_ethnicity
from mecc.interop.fhir.model import Defaults, Located, MappingResult
from mecc.interop.fhir.patient import map_patient
from mecc.interop.fhir.scores import sum_items
from mecc.interop.fhir.terms import CodeTables, default_tables

USED_TYPES = ("Patient", "Encounter", "Condition", "Observation", "MedicationStatement",
              "MedicationRequest", "Medication")
MEDICINE_TYPES = ("MedicationStatement", "MedicationRequest")


def check_resources(resources: Iterable[Located], checker: Checker | None = None) -> Checker:
    """Check the structure of every resource that was sent (not those made up from context)."""
    checker = checker or Checker()
    for loc in resources:
        if not loc.synthetic:
            checker.resource(loc)
    return checker


def map_resources(resources: Sequence[Located], *, catalogue: Catalogue,
                  defaults: Defaults, terms: CodeTables | None = None) -> MappingResult:
    """Map located resources to a contact event (raises ValidationFailed when what the mapping
    reads is structurally bad)."""
    ctx = MappingContext(resources, catalogue, defaults, terms or default_tables())
    usable = _checked(ctx, resources)
    by_type: dict[str, list[Located]] = {}
    for loc in usable:
        by_type.setdefault(loc.type, []).append(loc)
    patients = by_type.get("Patient", [])
    encounters = by_type.get("Encounter", [])
    _exactly_one(ctx, "Patient", patients)
    _exactly_one(ctx, "Encounter", encounters)
    ctx.errors.raise_if_any()
    # The Encounter before the rest: it sets the contact's time, and a value dated after the
    # contact is not a fact of it.
    ctx.patient, encounter = patients[0], encounters[0]
    event = ctx.result.event
    map_encounter(ctx, encounter, event)
    person = map_patient(ctx, ctx.patient)
    event["person"] = person
    coded = [c for c in (condition.map_condition(ctx, loc)
                         for loc in by_type.get("Condition", [])) if c is not None]
    for loc in by_type.get("Observation", []):
        observation.map_observation(ctx, loc)
    medicines = [m for kind in MEDICINE_TYPES for m in (
        medication.map_medication(ctx, loc) for loc in by_type.get(kind, [])) if m is not None]
    for loc in usable:
        if loc.type not in USED_TYPES:
            ctx.ignore(loc, f"{loc.type} resources are not used by the mapping.")
    finish_ethnicity(ctx, person)
    facts, dates = choose_facts(ctx)
    event["facts"] = facts
    if dates:
        event["fact_dates"] = dates
    event["conditions"] = condition.finish_conditions(ctx, coded, MAX_CONDITIONS)
    meds = medication.finish_medications(ctx, medicines, MAX_MEDICATIONS)
    if meds:
        event["medications"] = meds
    ctx.errors.raise_if_any()
    return ctx.result


def _checked(ctx: MappingContext, resources: Sequence[Located]) -> list[Located]:
    """The resources to map: every one without structural defects; one with defects only
    when the mapping would not read it (reported), else the defects refuse the request."""
    usable: list[Located] = []
    for loc in resources:
        if loc.synthetic or loc.type not in USED_TYPES:
            usable.append(loc)  # made up from context, or reported as not used
            continue
        own = Checker()
        own.resource(loc)
        if not own.errors:
            usable.append(loc)
        elif _reads(ctx, loc):
            for path, messages in own.errors.items():
                for message in messages:
                    ctx.errors.fail(path, message)
        else:
            for path, messages in own.errors.items():
                element = path.removeprefix(loc.path).lstrip(".") or None
                for message in messages:
                    ctx.ignore(loc, f"{message} The mapping does not use this resource, so "
                               "the defect does not refuse the request.", element)
    return usable


def _reads(ctx: MappingContext, loc: Located) -> bool:
    """Would the mapping use this resource (so that a defect in it matters)?"""
    if loc.type in ("Patient", "Encounter"):
        return True
    if loc.type == "Observation":
        return observation.reads(ctx, loc.resource)
    if loc.type == "Condition":
        return condition.reads(ctx, loc.resource)
    if loc.type in MEDICINE_TYPES:
        return medication.reads(ctx, loc)
    if loc.type == "Medication":
        return any(medication.reads(ctx, other) for other in ctx.resources
                   if other.type in MEDICINE_TYPES
                   and medication.medicine_source(ctx, other) is loc)
    return False


def _exactly_one(ctx: MappingContext, kind: str, found: list[Located]) -> None:
    if not found:
        where = ctx.resources[0].path.split(".")[0] if ctx.resources else "Bundle"
        ctx.errors.fail(f"{where}.entry" if where == "Bundle" else kind,
                        f"{'An' if kind[0] in 'AEIOU' else 'A'} {kind} resource is "
                        "required.")
    for extra in found[1:]:
        ctx.errors.fail(extra.path, f"A second {kind} ({extra.ref}); exactly one is "
                        "allowed.")


def date_text(when: datetime) -> str:
    """A fact's date for `fact_dates`: the day when only a day was sent, else the instant."""
    if when.tzinfo is not None and when.utcoffset() == UTC.utcoffset(None) \
            and (when.hour, when.minute, when.second, when.microsecond) == (0, 0, 0, 0):
        return when.date().isoformat()
    return when.isoformat()


def choose_facts(ctx: MappingContext) -> tuple[dict[str, Any], dict[str, str]]:
    """One value per fact from the values offered, and when each was recorded; values too old
    at the contact, and those another value beat, are reported as not used."""
    sum_items(ctx)
    derive_bmi(ctx)
    fresh: list[Candidate] = []
    for cand in ctx.candidates:
        reason = None
        if cand.when is not None and ctx.occurred is not None:
            reason = judge(cand.fact, cand.when, ctx.occurred, ctx.catalogue)
        if reason is None:
            fresh.append(cand)
            continue
        assert cand.when is not None  # judged only when dated
        ctx.result.ignored.append({
            "from": cand.origin.ref, "element": cand.element,
            "reason": f"{cand.fact} {cand.value!r} recorded {date_text(cand.when)}: {reason}.",
            "fact": cand.fact, "recorded_at": date_text(cand.when)})
    floor = datetime.min.replace(tzinfo=UTC)
    best: dict[str, Candidate] = {}
    for cand in fresh:
        held = best.get(cand.fact)
        rank = (cand.when or floor, cand.priority, cand.order)
        if held is None or rank > (held.when or floor, held.priority, held.order):
            best[cand.fact] = cand
    for cand in fresh:
        winner = best[cand.fact]
        if cand is not winner:
            ctx.result.ignored.append({
                "from": cand.origin.ref, "element": cand.element,
                "reason": f"{cand.fact}: a later or more direct value was used "
                          f"({winner.origin.ref})."})
    facts: dict[str, Any] = {}
    dates: dict[str, str] = {}
    for fact in sorted(best, key=lambda f: best[f].order):
        cand = best[fact]
        facts[fact] = cand.value
        ctx.result.provenance[f"facts.{fact}"] = cand.origin
        entry: dict[str, Any] = {"fact": fact, "value": cand.value, "from": cand.origin.ref,
                                 "element": cand.element}
        if cand.when is not None:
            entry["effective"] = cand.when.isoformat()
            dates[fact] = date_text(cand.when)
            ctx.result.provenance[f"fact_dates.{fact}"] = cand.origin
        if cand.note:
            entry["note"] = cand.note
        ctx.result.mapped.append(entry)
    return facts, dates
