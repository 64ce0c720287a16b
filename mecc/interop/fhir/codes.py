"""The code systems and identifier systems the mapping reads: the standard ones and our own.

The tables that map codes to meanings sit with the resource that uses them (`encounter.py`,
`patient.py`, `observation.py`, `smoking.py`, `scores.py`); this module holds only the URIs.
"""

from __future__ import annotations

from mecc.clinical.catalogue import SNOMED

__all__ = [
    "CONDITION_CLINICAL", "CONDITION_VERIFICATION", "CONTACT_TYPE_SYSTEM", "ETHNIC_CATEGORY_URL",
    "FACT_SYSTEM", "LOINC", "MECC_CODE_SYSTEMS", "NHS_NUMBER_SYSTEM", "ODS_SYSTEM",
    "SETTING_SYSTEM", "SNOMED", "STAFF_ROLE_SYSTEM", "UCUM", "V3_ACT_CODE",
]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
ETHNIC_CATEGORY_URL = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory")
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
# Our own code systems: stable identifiers (URIs, not necessarily resolvable) that let a sender
# say exactly what it means where the standard terminologies have no code for it.
MECC_CODE_SYSTEMS = "https://mecc-prompts.example/fhir/CodeSystem"
FACT_SYSTEM = f"{MECC_CODE_SYSTEMS}/fact"  # Observation.code = a catalogue fact's name
SETTING_SYSTEM = f"{MECC_CODE_SYSTEMS}/setting"  # Encounter.type / serviceType
CONTACT_TYPE_SYSTEM = f"{MECC_CODE_SYSTEMS}/contact-type"  # Encounter.type
STAFF_ROLE_SYSTEM = f"{MECC_CODE_SYSTEMS}/staff-role"  # Encounter.participant.type
