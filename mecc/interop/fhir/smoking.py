"""Smoking status: a FHIR Observation (or Condition) -> the `smoking_status` fact (current, ex,
never, unknown).

Three shapes are read: a smoking-status Observation (LOINC 72166-2 or SNOMED CT 365981007) whose
valueCodeableConcept is a SNOMED CT finding or a LOINC answer (US Core, UK Core); an Observation
whose code is itself a smoking finding, as GP systems record it (the PCD LSMOK_COD and
EXSMOK_COD lists, config/terminology/); and a Condition coded with such a finding (condition.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mecc.interop.fhir.codes import LOINC, SNOMED
from mecc.interop.fhir.context import MappingContext
from mecc.interop.fhir.datatypes import coding_key, codings, describe_codes
from mecc.interop.fhir.model import Located

SMOKING_STATUS_CODES = {(LOINC, "72166-2"), (SNOMED, "365981007")}
# SNOMED CT smoking findings -> smoking_status (RULE-PACK.md; the PCD lists add many more).
SMOKING_VALUES = {
    "77176002": "current",  # Smoker
    "449868002": "current",  # Smokes tobacco daily
    "428041000124106": "current",  # Occasional tobacco smoker
    "65568007": "current",  # Cigarette smoker
    "428071000124103": "current",  # Heavy tobacco smoker
    "428061000124105": "current",  # Light tobacco smoker
    "8517006": "ex",  # Ex-smoker
    "266919005": "never",  # Never smoked tobacco
    "221000119102": "never",  # Never smoked any substance
    "266927001": "unknown",  # Tobacco smoking consumption unknown
}
# LOINC answer list LL2201-3 (the US Core smoking status values) -> smoking_status.
LOINC_ANSWERS = {
    "LA18976-3": "current",  # Current every day smoker
    "LA18977-1": "current",  # Current some day smoker
    "LA18979-7": "current",  # Smoker, current status unknown
    "LA18981-3": "current",  # Heavy tobacco smoker
    "LA18982-1": "current",  # Light tobacco smoker
    "LA15920-4": "ex",  # Former smoker
    "LA18978-9": "never",  # Never smoker
    "LA18980-5": "unknown",  # Unknown if ever smoked
}


def smoking_code(ctx: MappingContext, system: str, code: str) -> str | None:
    """The smoking status a SNOMED CT finding (or a LOINC answer) says; None for other codes."""
    if system == SNOMED:
        return SMOKING_VALUES.get(code) or ctx.terms.smoking.get(code)
    if system == LOINC:
        return LOINC_ANSWERS.get(code)
    return None


def map_smoking_value(ctx: MappingContext, loc: Located, when: datetime | None) -> None:
    """A smoking-status Observation: its value is the finding."""
    concept = loc.resource.get("valueCodeableConcept")
    for i, coding in codings(concept):
        status = smoking_code(ctx, *coding_key(coding))
        if status is not None:
            ctx.offer("smoking_status", status, when, loc, f"valueCodeableConcept.coding[{i}]")
            return
    if concept is None:
        ctx.ignore(loc, "A smoking status without valueCodeableConcept.", "value[x]")
    else:
        ctx.ignore(loc, "The smoking status value is not a known SNOMED CT or LOINC answer "
                   f"code ({describe_codes(concept)}).", "valueCodeableConcept")


def map_smoking_finding(ctx: MappingContext, loc: Located, index: int, code: str,
                        when: datetime | None) -> None:
    """An Observation coded with a smoking finding: the code is the value. A consumption code
    ("Cigarette consumption") says the person smokes only with a number above zero."""
    status = smoking_code(ctx, SNOMED, code)
    if status is None:
        return
    if code in ctx.terms.consumption:
        amount = _amount(loc.resource)
        if amount is None or amount <= 0:
            ctx.ignore(loc, f"SNOMED CT {code} is a consumption: without an amount above "
                       "zero it does not say that the person smokes.", "value[x]")
            return
    ctx.offer("smoking_status", status, when, loc, f"code.coding[{index}]")


def _amount(obs: Mapping[str, Any]) -> float | None:
    quantity = obs.get("valueQuantity")
    raw = quantity.get("value") if isinstance(quantity, Mapping) else obs.get("valueInteger")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw)
