"""The CDS services offered here: their definitions, prefetch templates and discovery."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mecc.interop import fhir
from mecc.platform.errors import NotFound

# Identifiers on the wire (an `iss`, a hookInstance): printable, without spaces.
IDENT = re.compile(r"^[^\s\x00-\x1f\x7f]+$")


@dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]

    def definition(self) -> dict[str, Any]:
        return {"hook": self.hook, "title": self.title, "description": self.description,
                "id": self.id, "prefetch": dict(self.prefetch),
                "usageRequirements": "The Patient is required: prefetched, or fetched from "
                                     "the call's fhirServer when it is registered for the "
                                     "client (412 without either). Authenticate with a JWT "
                                     "signed by a key registered for the client's iss, or "
                                     "with an API key (no fetch)."}


def _prefetch(*, encounter: bool) -> dict[str, str]:
    """The prefetch templates; also the FHIR searches run against a call's fhirServer when the
    prefetch lacks them (fetch.py). The observation codes are every code the mapping reads:
    the standard ones and the UK lists' SNOMED CT codes (config/terminology)."""
    uk = sorted(fhir.default_tables().observation_codes - set(fhir.PREFETCH_SNOMED),
                key=lambda c: (len(c), c))
    codes = ",".join((*fhir.PREFETCH_LOINC, *fhir.PREFETCH_SNOMED, *uk))
    templates = {"patient": "Patient/{{context.patientId}}"}
    if encounter:
        templates["encounter"] = "Encounter/{{context.encounterId}}"
    # Every Condition, not only clinical-status=active: a diagnosis sent without a status, or
    # resolved later, is judged by the mapper (RULE-PACK.md "Current, not historic"); filtering
    # here would hide the very diagnosis an absence rule (DPP, blood pressure) must see.
    templates["conditions"] = "Condition?patient={{context.patientId}}"
    templates["observations"] = (
        f"Observation?patient={{{{context.patientId}}}}&code={codes}&_sort=-date")
    # A paused (on-hold) medicine still says the person is treated for the condition.
    templates["medications"] = (
        "MedicationStatement?patient={{context.patientId}}&status=active,on-hold")
    templates["medicationRequests"] = (
        "MedicationRequest?patient={{context.patientId}}&status=active,on-hold")
    return templates


SERVICES = {s.id: s for s in (
    CdsService(
        id="mecc-encounter-start", hook="encounter-start",
        title="MECC Prompts: Making Every Contact Count",
        description="At the start of an encounter, suggests the healthy-lifestyle conversation "
                    "or self-management / social-prescribing referral that fits this person, "
                    "with local services to refer to.",
        prefetch=_prefetch(encounter=True)),
    CdsService(
        id="mecc-patient-view", hook="patient-view",
        title="MECC Prompts: Making Every Contact Count",
        description="When a patient's record is opened, suggests the healthy-lifestyle "
                    "conversation or self-management / social-prescribing referral that fits "
                    "this person, with local services to refer to.",
        prefetch=_prefetch(encounter=False)),
)}


def discovery() -> dict[str, Any]:
    return {"services": [s.definition() for s in SERVICES.values()]}


def service(service_id: str) -> CdsService:
    found = SERVICES.get(service_id)
    if found is None:
        raise NotFound(f"No CDS service '{service_id}'; see GET /cds-services.")
    return found
