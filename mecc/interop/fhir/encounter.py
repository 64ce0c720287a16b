"""Encounter -> the contact: event_id, occurred_at, organisation, setting, contact type, staff."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

from mecc.interop.fhir.codes import (
    CONTACT_TYPE_SYSTEM,
    ODS_SYSTEM,
    SETTING_SYSTEM,
    SNOMED,
    STAFF_ROLE_SYSTEM,
    V3_ACT_CODE,
)
from mecc.interop.fhir.context import MappingContext
from mecc.interop.fhir.datatypes import (
    coding_key,
    codings,
    describe_codes,
    has_time_and_zone,
    parse_datetime,
    reference_id,
)
from mecc.interop.fhir.model import Located, Origin

REFUSED_ENCOUNTER_STATUSES = ("cancelled", "entered-in-error")
# Encounter.class (v3 ActCode) -> (setting, contact_type); None leaves it to Encounter.type.
ENCOUNTER_CLASS: dict[str, tuple[str | None, str | None]] = {
    "AMB": (None, "appointment"),
    "HH": ("community_nursing", "home_visit"),
    "VR": (None, "video"),
    "IMP": ("hospital_inpatient", None),
    "ACUTE": ("hospital_inpatient", None),
    "NONAC": ("hospital_inpatient", None),
    "SS": ("hospital_inpatient", None),
    "OBSENC": ("hospital_inpatient", None),
    "EMER": ("emergency_department", None),
    "PRENC": ("hospital_outpatient", "assessment"),
}
# Encounter.type SNOMED CT procedures -> contact_type (a type refines the class).
ENCOUNTER_TYPE_SNOMED = {
    "185317003": "telephone",  # Telephone encounter
    "439708006": "home_visit",  # Home visit
    "11429006": "appointment",  # Consultation
    "390906007": "review",  # Follow-up encounter
}
# Encounter.participant.type SNOMED CT occupations -> staff.role (only unambiguous ones).
STAFF_ROLE_SNOMED = {
    "62247001": "gp",  # General practitioner / family medicine specialist
    "46255001": "pharmacist",  # Pharmacist
}


def map_encounter(ctx: MappingContext, loc: Located, event: dict[str, Any]) -> None:
    """Fill the event's contact fields from the Encounter (and the request's defaults)."""
    enc = loc.resource
    status = enc.get("status")
    if status in REFUSED_ENCOUNTER_STATUSES:
        ctx.errors.fail(loc.at("status"), f"Encounter.status is '{status}': no contact "
                        "took place, so there is nothing to prompt about.")
    _event_id(ctx, loc, event)
    event["source"] = ctx.defaults.source
    _occurred_at(ctx, loc, event)
    _organisation(ctx, loc, event)
    setting, contact_type = _setting(ctx, loc)
    event["setting"] = setting
    event["contact_type"] = contact_type
    staff = _staff(ctx, loc)
    if staff:
        event["staff"] = staff


def _event_id(ctx: MappingContext, loc: Located, event: dict[str, Any]) -> None:
    """The request's own id (CDS hookInstance), else the first identifier, else the id."""
    enc = loc.resource
    if ctx.defaults.event_id is not None:
        event["event_id"] = ctx.defaults.event_id
    else:
        ident = enc.get("identifier")
        first = ident[0] if isinstance(ident, list) and ident else None
        if isinstance(first, Mapping) and isinstance(first.get("value"), str):
            ctx.field("event_id", first["value"], loc, "identifier[0].value")
            event["event_id"] = first["value"]
        elif loc.id:
            ctx.field("event_id", loc.id, loc, loc.id_element)
            event["event_id"] = loc.id
        else:
            ctx.errors.fail(loc.at("identifier"), "Encounter needs an identifier or an "
                            "id: it becomes the event_id.")


def _occurred_at(ctx: MappingContext, loc: Located, event: dict[str, Any]) -> None:
    if ctx.defaults.occurred_at is not None:
        when = ctx.defaults.occurred_at.astimezone(UTC)
        event["occurred_at"] = when.isoformat()
        ctx.occurred = when
        return
    period = loc.resource.get("period")
    start = period.get("start") if isinstance(period, Mapping) else None
    if start is None and ctx.defaults.occurred_at_fallback is not None:
        when = ctx.defaults.occurred_at_fallback.astimezone(UTC)
        event["occurred_at"] = when.isoformat()
        ctx.occurred = when
        return
    path = loc.at("period.start")
    if start is None:
        ctx.errors.fail(path, f"Encounter.period.start is required ({loc.ref}): it is "
                        "when the contact happened.")
        return
    if not has_time_and_zone(start):
        ctx.errors.fail(path, f"Encounter.period.start must be a date-time with a time "
                        f"and a zone offset, e.g. 2026-11-22T09:30:00+00:00 ({loc.ref}).")
        return
    ctx.occurred = parse_datetime(start)
    ctx.field("occurred_at", start, loc, "period.start")
    event["occurred_at"] = start


def _organisation(ctx: MappingContext, loc: Located, event: dict[str, Any]) -> None:
    provider = loc.resource.get("serviceProvider")
    ident = provider.get("identifier") if isinstance(provider, Mapping) else None
    if isinstance(ident, Mapping) and ident.get("system") == ODS_SYSTEM \
            and isinstance(ident.get("value"), str):
        ctx.field("organisation", ident["value"], loc, "serviceProvider.identifier.value")
        event["organisation"] = ident["value"]
        return
    if isinstance(provider, Mapping):
        ctx.ignore(loc, "serviceProvider has no ODS identifier (system "
                   f"{ODS_SYSTEM}); the key's organisation is used.", "serviceProvider")
    ctx.result.provenance["organisation"] = Origin(loc.ref, loc.at("serviceProvider"))
    if ctx.defaults.organisation is not None:
        event["organisation"] = ctx.defaults.organisation


def _setting(ctx: MappingContext, loc: Located) -> tuple[str, str]:
    enc = loc.resource
    setting: str | None = None
    contact_type: str | None = None
    settings = ctx.catalogue.facts["setting"].values or ()
    contact_types = ctx.catalogue.facts["contact_type"].values or ()
    klass = enc.get("class")
    if isinstance(klass, Mapping):
        system, code = coding_key(klass)
        mapped = ENCOUNTER_CLASS.get(code) if system == V3_ACT_CODE else None
        if mapped:
            setting, contact_type = mapped
            ctx.result.mapped.append({"field": "encounter.class", "value": code,
                                      "from": loc.ref, "element": "class"})
        else:
            ctx.ignore(loc, f"Encounter.class {system}|{code} does not map to a setting "
                       "or contact type.", "class")
    concepts: list[tuple[str, Any]] = []
    if isinstance(enc.get("type"), list):
        concepts += [(f"type[{i}]", c) for i, c in enumerate(enc["type"])]
    if "serviceType" in enc:
        concepts.append(("serviceType", enc["serviceType"]))
    for element, concept in concepts:
        used = False
        for i, coding in codings(concept):
            system, code = coding_key(coding)
            if system == SETTING_SYSTEM and code in settings:
                setting, used = code, True
            elif system == CONTACT_TYPE_SYSTEM and code in contact_types:
                contact_type, used = code, True
            elif system == SNOMED and code in ENCOUNTER_TYPE_SNOMED:
                contact_type, used = ENCOUNTER_TYPE_SNOMED[code], True
            else:
                continue
            ctx.result.mapped.append({"field": f"encounter.{element}", "value": code,
                                      "from": loc.ref, "element": f"{element}.coding[{i}]"})
        if not used:
            ctx.ignore(loc, f"No coding maps to a setting or contact type "
                       f"({describe_codes(concept)}).", element)
    return setting or "other", contact_type or "other"


def _staff(ctx: MappingContext, loc: Located) -> dict[str, Any]:
    """Staff from the first participant (CDS: from context.userId)."""
    staff: dict[str, Any] = {}
    if ctx.defaults.staff_reference:
        kind, ident = reference_id(ctx.defaults.staff_reference)
        staff["id"] = ident if kind == "Practitioner" else ctx.defaults.staff_reference
        ctx.result.provenance["staff.id"] = Origin(ctx.defaults.staff_reference,
                                                   ctx.defaults.staff_origin)
        ctx.result.mapped.append({"field": "staff.id", "value": staff["id"],
                                  "from": ctx.defaults.staff_reference,
                                  "element": ctx.defaults.staff_origin})
    participants = loc.resource.get("participant")
    first = participants[0] if isinstance(participants, list) and participants else None
    if not isinstance(first, Mapping):
        return staff
    individual = first.get("individual")
    if "id" not in staff and isinstance(individual, Mapping):
        found = _participant_id(ctx, individual)
        if found:
            staff["id"] = found[0]
            ctx.field("staff.id", found[0], loc, f"participant[0].individual.{found[1]}")
        else:
            ctx.ignore(loc, "The first participant has no individual reference or "
                       "identifier.", "participant[0].individual")
    role = _role(ctx, first, loc, "participant[0]")
    if role:
        staff["role"] = role
    return staff


def _participant_id(ctx: MappingContext, individual: Mapping[str, Any]) -> tuple[str, str] | None:
    ref = individual.get("reference")
    if isinstance(ref, str) and ref.strip():
        target = ctx.resolve(ref)
        if target is not None and target.id:
            return (target.id if target.type == "Practitioner" else target.ref,
                    "reference")
        kind, ident = reference_id(ref)
        if kind is not None:
            return (ident if kind == "Practitioner" else f"{kind}/{ident}", "reference")
    identifier = individual.get("identifier")
    if isinstance(identifier, Mapping) and isinstance(identifier.get("value"), str):
        return identifier["value"], "identifier.value"
    return None


def _role(ctx: MappingContext, part: Mapping[str, Any], loc: Located, element: str) -> str | None:
    roles = ctx.catalogue.facts["staff_role"].values or ()
    types = part.get("type")
    for t, concept in enumerate(types if isinstance(types, list) else []):
        for i, coding in codings(concept):
            system, code = coding_key(coding)
            role = code if system == STAFF_ROLE_SYSTEM and code in roles else (
                STAFF_ROLE_SNOMED.get(code) if system == SNOMED else None)
            if role:
                ctx.field("staff.role", role, loc, f"{element}.type[{t}].coding[{i}]")
                return role
        ctx.ignore(loc, f"participant type does not name a staff role "
                   f"({describe_codes(concept)}).", f"{element}.type[{t}]")
    return None
