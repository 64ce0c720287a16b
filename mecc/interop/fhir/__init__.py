"""FHIR R4 -> contact event: a pure mapping that says what it used and what it did not (and why).

`POST /api/v1/fhir` (a Bundle) and the CDS Hooks services (context + prefetch) both come through
`map_resources`, so one Patient, Encounter, Condition or Observation always means the same event,
whichever door it came in by. The result is a plain contact-event dict that then goes through the
same validation, authorisation and idempotency as `POST /api/v1/events`.

Nothing here touches the database or Flask: the functions take JSON-like data and return data.
Structural problems in what the mapping reads raise `ValidationFailed` with errors keyed by the
element's path from the body root (`Bundle.entry[2].resource.valueQuantity.value`); defects in
what it does not read are reported in `ignored`. `explain_errors` turns the contact event's own
validation errors (`facts.bmi`) into errors that also name the resource they came from.
See docs/interoperability.md for the tables in prose.

Where things are:
  bundle.py       the Bundle entry point (`map_bundle`), `explain_errors`
  mapper.py       `map_resources`: resource by resource, then one value per fact
  checker.py      structural checks (JSON types and FHIR formats of the elements read)
  encounter.py    event_id, occurred_at, organisation, setting, contact type, staff
  patient.py      the person: NHS number, birth date, sex, postcode district
  ethnicity.py    ethnic group: UK Core extension, SNOMED CT ethnicity Observations
  condition.py    coded conditions (SNOMED CT, ICD-10/-UK/-CM): current, confirmed, one per code
  observation.py  Observation codes -> facts; numeric facts, blood pressure
  smoking.py      smoking status (SNOMED CT findings, LOINC answers, smoking Conditions)
  scores.py       PHQ-2 / GAD-2 totals and item sums; PHQ-9 / GAD-7 panels
  body.py         BMI from a same-day weight and height
  medication.py   MedicationStatement / MedicationRequest -> current medicines
  terms.py        the UK observation and ethnicity code lists (config/terminology/)
  units.py        reading numbers and converting units
  codes.py        code system URIs;  datatypes.py  FHIR primitives and reading helpers
  model.py        Located, Origin, Defaults, MappingResult;  context.py  one run's state
"""

from mecc.interop.fhir.bundle import BUNDLE_TYPES, bundle_resources, explain_errors, map_bundle
from mecc.interop.fhir.checker import Checker
from mecc.interop.fhir.codes import (
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    CONTACT_TYPE_SYSTEM,
    ETHNIC_CATEGORY_URL,
    FACT_SYSTEM,
    LOINC,
    MECC_CODE_SYSTEMS,
    NHS_NUMBER_SYSTEM,
    ODS_SYSTEM,
    SETTING_SYSTEM,
    SNOMED,
    STAFF_ROLE_SYSTEM,
    UCUM,
    V3_ACT_CODE,
)
from mecc.interop.fhir.datatypes import has_time_and_zone, parse_datetime, reference_id
from mecc.interop.fhir.mapper import check_resources, map_resources
from mecc.interop.fhir.model import Defaults, Located, MappingResult, Origin, slug_source
from mecc.interop.fhir.observation import PREFETCH_LOINC, PREFETCH_SNOMED
from mecc.interop.fhir.terms import CodeTables, code_tables, default_tables

__all__ = [
    "BUNDLE_TYPES", "CONDITION_CLINICAL", "CONDITION_VERIFICATION", "CONTACT_TYPE_SYSTEM",
    "ETHNIC_CATEGORY_URL", "FACT_SYSTEM", "LOINC", "MECC_CODE_SYSTEMS", "NHS_NUMBER_SYSTEM",
    "ODS_SYSTEM", "PREFETCH_LOINC", "PREFETCH_SNOMED", "SETTING_SYSTEM", "SNOMED",
    "STAFF_ROLE_SYSTEM", "UCUM", "V3_ACT_CODE",
    "Checker", "CodeTables", "Defaults", "Located", "MappingResult", "Origin",
    "bundle_resources", "check_resources", "code_tables", "default_tables", "explain_errors",
    "has_time_and_zone",
    "map_bundle", "map_resources", "parse_datetime", "reference_id", "slug_source",
]
