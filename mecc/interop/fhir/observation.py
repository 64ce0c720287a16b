"""Observation -> facts: each coding of Observation.code is looked up in the code tables here
(numeric facts, blood pressure), in `smoking.py` and in `scores.py`, and handled by its kind."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mecc.clinical.recency import after_contact
from mecc.interop.fhir.body import MEASURES, map_measure
from mecc.interop.fhir.codes import FACT_SYSTEM, LOINC, SNOMED
from mecc.interop.fhir.context import MappingContext
from mecc.interop.fhir.datatypes import (
    absent_reason,
    coding_key,
    codings,
    describe_codes,
    parse_datetime,
)
from mecc.interop.fhir.ethnicity import (
    ETHNIC_GROUP_CODES,
    US_OMB_CODES,
    US_WHY,
    map_ethnicity_observation,
)
from mecc.interop.fhir.model import Located
from mecc.interop.fhir.patient import about_the_patient
from mecc.interop.fhir.scores import ITEM_SCALE, SCORE_PANELS, map_score_panel, record_item
from mecc.interop.fhir.smoking import (
    SMOKING_STATUS_CODES,
    SMOKING_VALUES,
    map_smoking_finding,
    map_smoking_value,
    smoking_code,
)
from mecc.interop.fhir.units import offer_numeric

USABLE_OBSERVATION_STATUSES = ("final", "amended", "corrected", "preliminary")
SYSTOLIC = {(LOINC, "8480-6"), (SNOMED, "271649006")}
DIASTOLIC = {(LOINC, "8462-4"), (SNOMED, "271650006")}
BP_PANELS = {(LOINC, "85354-9"), (LOINC, "55284-4"), (SNOMED, "75367002")}
# Observation.code -> the fact its value is, for plain numeric facts (standard codes; the PCD
# and OpenSAFELY lists in config/terminology/ add the UK SNOMED CT codes: terms.py).
NUMERIC_CODES = {
    (LOINC, "39156-5"): "bmi", (SNOMED, "60621009"): "bmi",
    (LOINC, "75626-2"): "audit_c", (SNOMED, "763256006"): "audit_c",
    (LOINC, "75624-7"): "audit", (SNOMED, "443280005"): "audit",
    (LOINC, "55758-7"): "phq2",
    (LOINC, "44261-6"): "phq9", (SNOMED, "720433000"): "phq9",
    (LOINC, "70274-6"): "gad7",
    (LOINC, "59261-8"): "hba1c_mmol_mol", (SNOMED, "999791000000106"): "hba1c_mmol_mol",
    (SNOMED, "1003671000000109"): "hba1c_mmol_mol",
    (LOINC, "4548-4"): "hba1c_mmol_mol", (LOINC, "17856-6"): "hba1c_mmol_mol",
    (LOINC, "4549-2"): "hba1c_mmol_mol",
}
# The codes the CDS Hooks prefetch templates (and the FHIR server fetch) ask for: every
# standard code in the tables here, in smoking.py, scores.py and body.py. The UK lists'
# SNOMED CT codes are added from terms.py (`prefetch_codes`).
PREFETCH_LOINC = ("72166-2", "39156-5", "75626-2", "75624-7", "55758-7", "55757-9",
                  "44250-9", "44255-8", "69725-0", "68509-9", "44261-6", "44249-1", "70274-6",
                  "69737-5", "59261-8", "4548-4", "17856-6", "4549-2", "85354-9", "55284-4",
                  "8480-6", "8462-4", "29463-7", "8302-2")
PREFETCH_SNOMED = ("60621009", "75367002", "271649006", "271650006", "365981007",
                   "999791000000106", "1003671000000109", "763256006", "443280005",
                   "720433000", "27113001", "50373000", *SMOKING_VALUES)


def reads(ctx: MappingContext, obs: Mapping[str, Any]) -> bool:
    """True when some coding of Observation.code is one the mapping reads (a defect in such an
    Observation refuses the request; in any other it is only reported)."""
    return any(_kind(ctx, coding_key(c)) is not None for _, c in codings(obs.get("code")))


def map_observation(ctx: MappingContext, loc: Located) -> None:
    """Offer the facts an Observation gives (or say in `ignored` why it gives none)."""
    obs = loc.resource
    status = obs.get("status")
    if status not in USABLE_OBSERVATION_STATUSES:
        ctx.ignore(loc, f"status '{status}' is not a usable result.", "status")
        return
    if not about_the_patient(ctx, loc):
        return
    when = _effective(obs)
    if when is not None and ctx.occurred is not None and after_contact(when, ctx.occurred):
        ctx.ignore(loc, "It is dated after the contact.", "effective[x]")
        return
    handlers: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for i, coding in codings(obs.get("code")):
        kind = _kind(ctx, coding_key(coding))
        if kind is not None and kind not in handlers:
            handlers[kind] = (i, coding)
    if not handlers:
        ctx.ignore(loc, "No coding of Observation.code is in the code table "
                   f"({describe_codes(obs.get('code'))}).", "code")
        return
    if "dataAbsentReason" in obs and not isinstance(obs.get("component"), list):
        ctx.ignore(loc, f"dataAbsentReason: {absent_reason(obs)}.", "dataAbsentReason")
        return
    for kind, (index, coding) in handlers.items():
        _handle(ctx, kind, index, coding_key(coding), loc, when)


def numeric_fact(ctx: MappingContext, key: tuple[str, str]) -> str | None:
    """The numeric fact an Observation.code coding is (standard codes, then the UK lists)."""
    if key in NUMERIC_CODES:
        return NUMERIC_CODES[key]
    system, code = key
    if system != SNOMED:
        return None
    if code in ctx.terms.bmi:
        return "bmi"
    if code in ctx.terms.hba1c:
        return "hba1c_mmol_mol"
    return None


def _kind(ctx: MappingContext, key: tuple[str, str]) -> str | None:
    """Which table a coding is in, as a handler key (None: in none of them)."""
    system, code = key
    fact = numeric_fact(ctx, key)
    if fact is not None:
        return f"numeric:{fact}"  # one value per fact from one Observation, however coded
    terms = ctx.terms
    if key in BP_PANELS or (system == SNOMED and code in terms.bp_panels):
        return "bp-panel"
    if key in SYSTOLIC or (system == SNOMED and code in terms.systolic):
        return "systolic"
    if key in DIASTOLIC or (system == SNOMED and code in terms.diastolic):
        return "diastolic"
    if key in SMOKING_STATUS_CODES:
        return "smoking-value"
    if system == SNOMED and smoking_code(ctx, system, code) is not None:
        return "smoking-finding"
    if key in MEASURES:
        return f"measure:{MEASURES[key]}"
    if key in ETHNIC_GROUP_CODES or (system == SNOMED and code in terms.ethnicity):
        return "ethnicity"
    if key in US_OMB_CODES:
        return "us-race"
    if key in SCORE_PANELS:
        return f"panel:{code}"
    if system == LOINC and code in ITEM_SCALE:
        return f"item:{code}"
    if system == FACT_SYSTEM and code in ctx.catalogue.sent_facts:
        return f"fact:{code}"
    return None


def _handle(ctx: MappingContext, kind: str, index: int, key: tuple[str, str], loc: Located,
            when: datetime | None) -> None:
    """Map the Observation as one coding of its code says."""
    obs = loc.resource
    if kind.startswith("numeric:"):
        offer_numeric(ctx, kind.split(":")[1], obs, loc, "", when, key)
    elif kind == "bp-panel":
        _bp_panel(ctx, loc, when)
    elif kind == "systolic":
        offer_numeric(ctx, "systolic_bp", obs, loc, "", when, key)
    elif kind == "diastolic":
        offer_numeric(ctx, "diastolic_bp", obs, loc, "", when, key)
    elif kind == "smoking-value":
        map_smoking_value(ctx, loc, when)
    elif kind == "smoking-finding":
        map_smoking_finding(ctx, loc, index, key[1], when)
    elif kind.startswith("measure:"):
        map_measure(ctx, kind.split(":", 1)[1], loc, when)
    elif kind == "ethnicity":
        map_ethnicity_observation(ctx, loc, index, when)
    elif kind == "us-race":
        ctx.ignore(loc, US_WHY, f"code.coding[{index}]")
    elif kind.startswith("panel:"):
        map_score_panel(ctx, loc, SCORE_PANELS[key], when)
    elif kind.startswith("item:"):
        record_item(ctx, key[1], obs, loc, "", when, group=f"time:{when}")
    elif kind.startswith("fact:"):
        _catalogue_fact(ctx, key[1], obs, loc, when)


def _effective(obs: Mapping[str, Any]) -> datetime | None:
    """When the Observation holds (its effective[x], else when it was issued)."""
    for name in ("effectiveDateTime", "effectiveInstant"):
        if isinstance(obs.get(name), str):
            return parse_datetime(obs[name])
    period = obs.get("effectivePeriod")
    if isinstance(period, Mapping) and isinstance(period.get("start"), str):
        return parse_datetime(period["start"])
    if isinstance(obs.get("issued"), str):
        return parse_datetime(obs["issued"])
    return None


def _bp_panel(ctx: MappingContext, loc: Located, when: datetime | None) -> None:
    """A blood pressure panel: systolic and diastolic from its components."""
    components = loc.resource.get("component")
    if not isinstance(components, list) or not components:
        ctx.ignore(loc, "A blood pressure panel without components.", "component")
        return
    for c, comp in enumerate(components):
        if not isinstance(comp, Mapping):
            continue
        keys = [coding_key(cd) for _, cd in codings(comp.get("code"))]
        kinds = {k: _kind(ctx, k) for k in keys}
        key = next((k for k in keys if kinds[k] in ("systolic", "diastolic")), None)
        if key is None:
            ctx.ignore(loc, "Not a systolic or diastolic component "
                       f"({describe_codes(comp.get('code'))}).", f"component[{c}]")
            continue
        fact = "systolic_bp" if kinds[key] == "systolic" else "diastolic_bp"
        offer_numeric(ctx, fact, comp, loc, f"component[{c}]", when, key)


def _catalogue_fact(ctx: MappingContext, fact: str, obs: Mapping[str, Any], loc: Located,
                    when: datetime | None) -> None:
    """An Observation coded with our own fact code: its value[x] is the fact's value."""
    spec = ctx.catalogue.facts[fact]
    if spec.type in ("int", "double"):
        offer_numeric(ctx, fact, obs, loc, "", when, (FACT_SYSTEM, fact))
        return
    if spec.type == "bool":
        if isinstance(obs.get("valueBoolean"), bool):
            ctx.offer(fact, obs["valueBoolean"], when, loc, "valueBoolean", priority=2)
        else:
            ctx.ignore(loc, f"{fact} needs valueBoolean.", "value[x]")
        return
    if isinstance(obs.get("valueString"), str):
        ctx.offer(fact, obs["valueString"].strip(), when, loc, "valueString", priority=2)
        return
    for i, coding in codings(obs.get("valueCodeableConcept")):
        if coding.get("system") == FACT_SYSTEM and isinstance(coding.get("code"), str):
            ctx.offer(fact, coding["code"], when, loc,
                      f"valueCodeableConcept.coding[{i}]", priority=2)
            return
    ctx.ignore(loc, f"{fact} needs valueString or a valueCodeableConcept coding in "
               f"{FACT_SYSTEM}.", "value[x]")
