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
                "usageRequirements": "Prefetch of the Patient is required (412 without it). "
                                     "Authenticate with a JWT signed by a key registered "
                                     "for the client's iss, or with an API key."}


def _prefetch(*, encounter: bool) -> dict[str, str]:
    codes = ",".join((*fhir.PREFETCH_LOINC, *fhir.PREFETCH_SNOMED))
    templates = {"patient": "Patient/{{context.patientId}}"}
    if encounter:
        templates["encounter"] = "Encounter/{{context.encounterId}}"
    templates["conditions"] = "Condition?patient={{context.patientId}}&clinical-status=active"
    templates["observations"] = (
        f"Observation?patient={{{{context.patientId}}}}&code={codes}&_sort=-date")
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
