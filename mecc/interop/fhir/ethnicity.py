"""Ethnicity: the person's `ethnicity_group` from the UK Core ethnic-category extension (an NHS
ethnic category code A-Z, or a SNOMED CT ethnicity concept in it) or from an Observation whose
code or value is a SNOMED CT ethnicity concept, as GP records carry it (16 census groups ->
our groups: terms.py). The Patient's extension wins; else the latest Observation.

US Core race and ethnicity (OMB categories) are reported, not mapped: "Asian" or "Black or
African American" does not say which UK group (South Asian, Chinese, Black African, Black
Caribbean, ...) NICE's BMI thresholds are for, and a wrong group is worse than none.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mecc.interop.fhir.codes import ETHNIC_CATEGORY_URL, LOINC, SNOMED
from mecc.interop.fhir.context import Ethnicity, MappingContext
from mecc.interop.fhir.datatypes import coding_key, codings, describe_codes
from mecc.interop.fhir.model import Located

# NHS ethnic category (England, the 2001 census list UK Core uses) -> ethnicity_group.
ETHNIC_CATEGORY = {
    "A": "white", "B": "white", "C": "white",
    "D": "mixed", "E": "mixed", "F": "mixed", "G": "mixed",
    "H": "south_asian", "J": "south_asian", "K": "south_asian", "L": "other_asian",
    "M": "black_caribbean", "N": "black_african", "P": "black_other",
    "R": "chinese", "S": "other", "Z": "not_stated",
}
# Observation.code of an "ethnic group" observable whose value is the ethnicity concept.
ETHNIC_GROUP_CODES = {(SNOMED, "364699009"), (SNOMED, "372148003")}
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
US_OMB_CODES = {(LOINC, "32624-9"), (LOINC, "69490-1")}  # Race, Ethnicity OMB.1997
US_WHY = ("US Core race/ethnicity (OMB categories) does not map to the UK ethnic groups the "
          "rules use (e.g. 'Asian' does not say South Asian or Chinese); it is not used.")


def _group(ctx: MappingContext, coding: Mapping[str, Any]) -> str | None:
    system, code = coding_key(coding)
    if system == SNOMED:
        return ctx.terms.ethnicity.get(code)
    if "EthnicCategory" in system and code.upper() in ETHNIC_CATEGORY:
        return ETHNIC_CATEGORY[code.upper()]
    return None


def map_patient_ethnicity(ctx: MappingContext, loc: Located) -> None:
    """The Patient's extensions: the UK Core ethnic category; US Core race is reported."""
    extensions = loc.resource.get("extension")
    for e, ext in enumerate(extensions if isinstance(extensions, list) else []):
        if not isinstance(ext, Mapping):
            continue
        if ext.get("url") in (US_CORE_RACE, US_CORE_ETHNICITY):
            ctx.ignore(loc, US_WHY, f"extension[{e}]")
            continue
        if ext.get("url") != ETHNIC_CATEGORY_URL:
            continue
        concept = ext.get("valueCodeableConcept")
        for i, coding in codings(concept):
            group = _group(ctx, coding)
            if group is not None:
                ctx.ethnicities.append(Ethnicity(
                    group, None, loc, f"extension[{e}].valueCodeableConcept.coding[{i}]"))
                return
        ctx.ignore(loc, "The ethnic category is not one of the NHS ethnic category codes "
                   f"A-Z nor a SNOMED CT ethnicity concept ({describe_codes(concept)}).",
                   f"extension[{e}]")


def map_ethnicity_observation(ctx: MappingContext, loc: Located, index: int,
                              when: datetime | None) -> None:
    """An Observation coded with an ethnicity concept, or an ethnic-group observable whose
    value is one."""
    obs = loc.resource
    for i, coding in codings(obs.get("code")):
        group = _group(ctx, coding) if coding_key(coding)[0] == SNOMED else None
        if group is not None:
            ctx.ethnicities.append(Ethnicity(group, when, loc, f"code.coding[{i}]"))
            return
    concept = obs.get("valueCodeableConcept")
    for i, coding in codings(concept):
        group = _group(ctx, coding)
        if group is not None:
            ctx.ethnicities.append(Ethnicity(group, when, loc,
                                             f"valueCodeableConcept.coding[{i}]"))
            return
    ctx.ignore(loc, "The ethnic group value is not a SNOMED CT ethnicity concept "
               f"({describe_codes(concept)}).", "value[x]")


def finish_ethnicity(ctx: MappingContext, person: dict[str, Any]) -> None:
    """Set person.ethnicity_group from the Patient's extension, else the latest Observation."""
    if not ctx.ethnicities:
        return
    chosen = min(ctx.ethnicities, key=lambda e: (
        e.when is not None, -e.when.timestamp() if e.when else 0.0))
    person["ethnicity_group"] = chosen.group
    ctx.field("person.ethnicity_group", chosen.group, chosen.loc, chosen.element)
    for other in ctx.ethnicities:
        if other is not chosen:
            why = "The Patient's ethnic category was used." if chosen.when is None else \
                f"A later record of ethnicity was used ({chosen.loc.ref})."
            ctx.ignore(other.loc, why, other.element)
