"""Patient -> the person: id, NHS number, birth date, sex, ethnic group, postcode district."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mecc.interop.fhir.codes import NHS_NUMBER_SYSTEM
from mecc.interop.fhir.context import MappingContext
from mecc.interop.fhir.datatypes import reference_id
from mecc.interop.fhir.ethnicity import map_patient_ethnicity
from mecc.interop.fhir.model import Located, Origin

POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?[0-9][A-Z]{2}$")
DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")


def map_patient(ctx: MappingContext, loc: Located) -> dict[str, Any]:
    """The event's person: only what the rules use (no names, no full address)."""
    pat = loc.resource
    person: dict[str, Any] = {}
    if loc.id:
        person["id"] = loc.id
        ctx.field("person.id", loc.id, loc, loc.id_element)
    else:
        ctx.errors.fail(loc.at("id"), "Patient.id is required: it becomes person.id.")
    for i, ident in enumerate(pat.get("identifier") or []):
        if isinstance(ident, Mapping) and ident.get("system") == NHS_NUMBER_SYSTEM \
                and isinstance(ident.get("value"), str):
            person["nhs_number"] = ident["value"]
            ctx.field("person.nhs_number", None, loc, f"identifier[{i}].value", show=False)
            break
    birth = pat.get("birthDate")
    if isinstance(birth, str):
        if len(birth) == 10:
            person["birth_date"] = birth
            ctx.field("person.birth_date", birth, loc, "birthDate")
        else:
            ctx.ignore(loc, "birthDate is partial; a full date is needed to work out "
                       "the age.", "birthDate")
    ctx.result.provenance.setdefault("person.birth_date", Origin(loc.ref, loc.at("birthDate")))
    ctx.result.provenance.setdefault("person.age", Origin(loc.ref, loc.at("birthDate")))
    gender = pat.get("gender")
    if isinstance(gender, str):
        person["sex"] = gender
        ctx.field("person.sex", gender, loc, "gender")
    map_patient_ethnicity(ctx, loc)  # person.ethnicity_group: set once Observations are read
    _postcode(ctx, loc, person)
    return person


def _postcode(ctx: MappingContext, loc: Located, person: dict[str, Any]) -> None:
    addresses = [a for a in loc.resource.get("address") or [] if isinstance(a, Mapping)]
    if not addresses:
        return
    current = [(i, a) for i, a in enumerate(loc.resource.get("address") or [])
               if isinstance(a, Mapping) and a.get("use") != "old"
               and not (isinstance(a.get("period"), Mapping) and a["period"].get("end"))]
    if not current:
        ctx.ignore(loc, "Every address is an old one; no postcode district is sent.",
                   "address")
        return
    index, address = current[0]
    raw = address.get("postalCode")
    if not isinstance(raw, str):
        return
    text = " ".join(raw.upper().split())
    match = POSTCODE.match(text)
    district = match.group(1) if match else (text if DISTRICT.match(text) else None)
    if district is None:
        ctx.ignore(loc, f"postalCode '{raw}' is not a UK postcode.",
                   f"address[{index}].postalCode")
        return
    person["postcode_district"] = district
    ctx.field("person.postcode_district", district, loc, f"address[{index}].postalCode")


def about_the_patient(ctx: MappingContext, loc: Located, element: str = "subject") -> bool:
    """True unless the resource's subject names someone other than this request's Patient."""
    subject = loc.resource.get(element)
    ref = subject.get("reference") if isinstance(subject, Mapping) else None
    if not isinstance(ref, str) or ctx.patient is None:
        return True
    patient = ctx.patient
    if ref == patient.full_url:
        return True
    kind, ident = reference_id(ref)
    if kind == "Patient" and ident == patient.id:
        return True
    if ref.startswith("Patient?identifier=") and _names_patient(ref, patient):
        return True  # a conditional reference, as transaction Bundles carry them
    if ref.startswith(("urn:uuid:", "urn:oid:")) and ctx.resolve(ref) is None:
        # A Bundle-local id whose resource was not sent (a CDS client's prefetch built from a
        # transaction Bundle): it names no other resource here, and one Patient is required,
        # so it can only be that Patient.
        return True
    ctx.ignore(loc, f"It is about {ref}, not the Patient of this request ({patient.ref}).",
               element)
    return False


def _names_patient(ref: str, patient: Located) -> bool:
    """`Patient?identifier=system|value` (or `=value`) names one of the Patient's identifiers."""
    wanted = ref.split("=", 1)[1]
    system, _, value = wanted.rpartition("|")
    for ident in patient.resource.get("identifier") or []:
        if isinstance(ident, Mapping) and ident.get("value") == value \
                and (not system or ident.get("system") == system):
            return True
    return False
