"""FHIR R4 -> contact event: a pure mapping that says what it used and what it did not (and why).

`POST /api/v1/fhir` (a Bundle) and the CDS Hooks services (context + prefetch) both come through
`map_resources`, so one Patient, Encounter, Condition or Observation always means the same event,
whichever door it came in by. The result is a plain contact-event dict that then goes through the
same validation, authorisation and idempotency as `POST /api/v1/events`.

Nothing here touches the database or Flask: the functions take JSON-like data and return data.
Structural problems raise `ValidationFailed` with errors keyed by the element's path from the body
root (`Bundle.entry[2].resource.valueQuantity.value`); `explain_errors` turns the contact event's
own validation errors (`facts.bmi`) into errors that also name the resource they came from.
See docs/interoperability.md for the tables in prose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from mecc.clinical.catalogue import CODE_SYSTEMS, SNOMED, Catalogue
from mecc.platform.errors import ValidationFailed, describe

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

BUNDLE_TYPES = ("collection", "transaction")
USABLE_OBSERVATION_STATUSES = ("final", "amended", "corrected", "preliminary")
ACTIVE_CLINICAL_STATUSES = ("active", "recurrence", "relapse")
UNUSABLE_VERIFICATION = ("unconfirmed", "provisional", "differential", "refuted",
                         "entered-in-error")
REFUSED_ENCOUNTER_STATUSES = ("cancelled", "entered-in-error")

# --------------------------------------------------------------------------- code tables
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
# NHS ethnic category (England, the 2001 census list UK Core uses) -> ethnicity_group.
ETHNIC_CATEGORY = {
    "A": "white", "B": "white", "C": "white",
    "D": "mixed", "E": "mixed", "F": "mixed", "G": "mixed",
    "H": "south_asian", "J": "south_asian", "K": "south_asian", "L": "other_asian",
    "M": "black_caribbean", "N": "black_african", "P": "black_other",
    "R": "chinese", "S": "other", "Z": "not_stated",
}

SMOKING_VALUES = {
    "77176002": "current",  # Smoker
    "449868002": "current",  # Smokes tobacco daily
    "428041000124106": "current",  # Occasional tobacco smoker
    "65568007": "current",  # Cigarette smoker
    "428071000124103": "current",  # Heavy tobacco smoker
    "428061000124105": "current",  # Light tobacco smoker
    "8517006": "ex",  # Ex-smoker
    "266919005": "never",  # Never smoked tobacco
    "266927001": "unknown",  # Tobacco smoking consumption unknown
}
# LOINC answer codes of the PHQ/GAD item answer list (Not at all .. Nearly every day).
ITEM_ANSWERS = {"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}
# Two-item scales: fact -> its two item codes (LOINC).
SCALE_ITEMS = {"phq2": ("44250-9", "44255-8"), "gad2": ("69725-0", "68509-9")}
ITEM_SCALE = {code: fact for fact, codes in SCALE_ITEMS.items() for code in codes}
SYSTOLIC = {(LOINC, "8480-6"), (SNOMED, "271649006")}
DIASTOLIC = {(LOINC, "8462-4"), (SNOMED, "271650006")}
BP_PANELS = {(LOINC, "85354-9"), (SNOMED, "75367002")}
# Panels whose components may carry a total or the items of a two-item scale.
SCORE_PANELS = {(LOINC, "55757-9"): "phq2",  # PHQ-2 panel (a value on it is the total)
                (LOINC, "44249-1"): None,  # PHQ-9 panel: its first two items are the PHQ-2
                (LOINC, "69737-5"): None}  # GAD-7 panel: its first two items are the GAD-2
# Observation.code -> the fact its value is, for plain numeric facts.
NUMERIC_CODES = {
    (LOINC, "39156-5"): "bmi", (SNOMED, "60621009"): "bmi",
    (LOINC, "75626-2"): "audit_c",
    (LOINC, "75624-7"): "audit",
    (LOINC, "55758-7"): "phq2",
    (LOINC, "59261-8"): "hba1c_mmol_mol", (SNOMED, "999791000000106"): "hba1c_mmol_mol",
    (LOINC, "4548-4"): "hba1c_mmol_mol",
}
# The unit assumed when a quantity has none (the code's own unit).
DEFAULT_UNIT = {(LOINC, "4548-4"): "%"}
SMOKING_STATUS_CODES = {(LOINC, "72166-2"), (SNOMED, "365981007")}
# The LOINC codes of the table, for the CDS Hooks prefetch template (and SNOMED CT ones).
PREFETCH_LOINC = ("72166-2", "39156-5", "75626-2", "75624-7", "55758-7", "55757-9",
                  "44250-9", "44255-8", "69725-0", "68509-9", "59261-8", "4548-4", "85354-9",
                  "8480-6", "8462-4")
PREFETCH_SNOMED = ("60621009", "75367002", "271649006", "271650006", "365981007",
                   "999791000000106")

SCORE_UNITS = {"1", "{score}", "{Score}", "score", "{ScoreOf}"}
MMHG_PER_KPA = 7.50062


def _unit_factor(fact: str, unit: str | None) -> float | None:
    """Multiplier to the catalogue unit, or None when the unit is not one we can convert."""
    if unit is None:
        return 1.0
    if fact == "bmi":
        return 1.0 if unit.lower() in ("kg/m2", "kg/m^2", "kg/(m2)") else None
    if fact in ("systolic_bp", "diastolic_bp"):
        if unit in ("mm[Hg]", "mmHg", "mm Hg"):
            return 1.0
        return MMHG_PER_KPA if unit == "kPa" else None
    return 1.0 if unit in SCORE_UNITS else None


# --------------------------------------------------------------------------- FHIR primitives
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
DATE = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$")
DATETIME = re.compile(
    r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?"
    r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$")
INSTANT = re.compile(
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"([0-5][0-9]|60)(\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$")
POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?[0-9][A-Z]{2}$")
DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
SNOMED_CODE = re.compile(r"^[1-9][0-9]{5,17}$")
ICD10_CODE = re.compile(r"^[A-Za-z][0-9]{2}(\.?[0-9A-Za-z]{1,4})?$")
_FRACTION = re.compile(r"\.([0-9]+)")


def parse_datetime(value: str) -> datetime | None:
    """A FHIR date / dateTime / instant as an aware datetime (partial dates: their start, UTC).

    A time without a zone (not valid FHIR, but seen) is read as UTC; None when unreadable.
    """
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 4:
            return datetime(int(value), 1, 1, tzinfo=UTC)
        if len(value) == 7:
            return datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value, count=1)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def has_time_and_zone(value: str) -> bool:
    return bool(isinstance(value, str) and "T" in value and DATETIME.match(value))


# --------------------------------------------------------------------------- located resources
@dataclass(frozen=True)
class Located:
    """A resource and where it sits in the request (for error paths and provenance)."""

    resource: Mapping[str, Any]
    path: str  # e.g. "Bundle.entry[2].resource" or "prefetch.patient"
    full_url: str | None = None
    synthetic: bool = False  # made up from CDS context (no resource was sent)

    @property
    def type(self) -> str:
        return str(self.resource.get("resourceType"))

    @property
    def id(self) -> str | None:
        value = self.resource.get("id")
        return value if isinstance(value, str) else None

    @property
    def ref(self) -> str:
        if self.id:
            return f"{self.type}/{self.id}"
        return self.full_url or self.path

    def at(self, element: str) -> str:
        return f"{self.path}.{element}" if element else self.path


@dataclass(frozen=True)
class Origin:
    """Where a value of the contact event came from."""

    ref: str  # "Observation/bmi-1"
    path: str  # "Bundle.entry[2].resource.valueQuantity.value"


@dataclass(frozen=True)
class Defaults:
    """What the request itself supplies: the key or client, the query, the CDS context."""

    source: str
    organisation: str | None  # the key's / client's ODS code; None when bound to all
    event_id: str | None = None  # CDS: hookInstance (else the Encounter's identifier or id)
    occurred_at: datetime | None = None  # CDS patient-view: now, whatever the Encounter says
    occurred_at_fallback: datetime | None = None  # CDS encounter-start: now, if no period.start
    staff_reference: str | None = None  # CDS: context.userId
    staff_origin: str = "context.userId"


@dataclass
class MappingResult:
    event: dict[str, Any]
    mapped: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Origin] = field(default_factory=dict)


# --------------------------------------------------------------------------- structure checks
class Checker:
    """Collects structural errors (JSON types of the elements the mapping reads)."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}
        self._within: Located | None = None  # the resource being checked

    def fail(self, path: str, message: str) -> None:
        loc = self._within
        if loc is not None and path.startswith(loc.path):
            # Name the resource and element: "Encounter.period.start: Not a valid ...".
            message = f"{loc.type}{path[len(loc.path):]}: {message}"
        self.errors.setdefault(path, []).append(message)

    def raise_if_any(self, lead: str = "The FHIR content is not valid") -> None:
        if self.errors:
            raise ValidationFailed(f"{lead}: " + describe(self.errors).removeprefix(
                "Invalid request: "), errors=self.errors)

    # shapes
    def obj(self, node: Any, path: str) -> bool:
        if not isinstance(node, Mapping):
            self.fail(path, "Must be a JSON object.")
            return False
        return True

    def array(self, node: Any, path: str) -> list[Any]:
        if not isinstance(node, list):
            self.fail(path, "Must be a JSON array.")
            return []
        return node

    def string(self, node: Any, path: str) -> bool:
        if not isinstance(node, str):
            self.fail(path, "Must be a string.")
            return False
        if not node.strip():
            self.fail(path, "Must not be empty.")
            return False
        return True

    def pattern(self, node: Any, path: str, regex: re.Pattern[str], what: str) -> None:
        if self.string(node, path) and not regex.match(node):
            self.fail(path, f"Not a valid FHIR {what}.")

    def number(self, node: Any, path: str) -> None:
        if isinstance(node, bool) or not isinstance(node, int | float):
            self.fail(path, "Must be a JSON number.")

    def integer(self, node: Any, path: str) -> None:
        if isinstance(node, bool) or not (isinstance(node, int) or (
                isinstance(node, float) and node.is_integer())):
            self.fail(path, "Must be a JSON integer.")

    def boolean(self, node: Any, path: str) -> None:
        if not isinstance(node, bool):
            self.fail(path, "Must be true or false.")

    # data types (only the elements the mapping reads are checked)
    def fields(self, node: Mapping[str, Any], path: str,
               checks: Mapping[str, Callable[[Any, str], Any]]) -> None:
        for name, check in checks.items():
            if name in node:
                check(node[name], f"{path}.{name}")

    def coding(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            self.fields(node, path, {"system": self.string, "code": self.string,
                                     "display": self.string, "version": self.string})

    def codeable(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            if "coding" in node:
                for i, item in enumerate(self.array(node["coding"], f"{path}.coding")):
                    self.coding(item, f"{path}.coding[{i}]")
            self.fields(node, path, {"text": self.string})

    def codeables(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            self.codeable(item, f"{path}[{i}]")

    def quantity(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            if "value" not in node:
                self.fail(f"{path}.value", "Required (a Quantity without a value says "
                          "nothing).")
            self.fields(node, path, {"value": self.number, "unit": self.string,
                                     "system": self.string, "code": self.string})
            if "comparator" in node and node["comparator"] not in ("<", "<=", ">=", ">"):
                self.fail(f"{path}.comparator", "Must be one of <, <=, >=, >.")

    def period(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            for name in ("start", "end"):
                if name in node:
                    self.date_time(node[name], f"{path}.{name}")

    def identifier(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            self.fields(node, path, {"system": self.string, "value": self.string})

    def identifiers(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            self.identifier(item, f"{path}[{i}]")

    def reference(self, node: Any, path: str) -> None:
        if self.obj(node, path):
            self.fields(node, path, {"reference": self.string, "identifier": self.identifier,
                                     "display": self.string})

    def date_time(self, node: Any, path: str) -> None:
        self.pattern(node, path, DATETIME, "dateTime (YYYY, YYYY-MM, YYYY-MM-DD, or a date-time "
                     "with a zone offset)")

    def instant(self, node: Any, path: str) -> None:
        self.pattern(node, path, INSTANT, "instant")

    def extensions(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            if self.obj(item, f"{path}[{i}]"):
                if "url" not in item:
                    self.fail(f"{path}[{i}].url", "Required.")
                else:
                    self.string(item["url"], f"{path}[{i}].url")
                if item.get("url") == ETHNIC_CATEGORY_URL and "valueCodeableConcept" in item:
                    self.codeable(item["valueCodeableConcept"],
                                  f"{path}[{i}].valueCodeableConcept")

    def value_x(self, node: Mapping[str, Any], path: str) -> None:
        present = [k for k in node if k.startswith("value")]
        if len(present) > 1:
            self.fail(f"{path}.{present[1]}", f"Only one value[x] is allowed (also has "
                      f"{present[0]}).")
        self.fields(node, path, {
            "valueQuantity": self.quantity, "valueCodeableConcept": self.codeable,
            "valueInteger": self.integer, "valueString": self.string,
            "valueBoolean": self.boolean, "dataAbsentReason": self.codeable})

    # resources
    def resource(self, loc: Located) -> None:
        node, path = loc.resource, loc.path
        check = getattr(self, f"_{loc.type.lower()}", None)
        self._within = loc
        try:
            if "id" in node:
                self.pattern(node["id"], f"{path}.id", ID, "id")
            if check is not None:
                check(node, path)
        finally:
            self._within = None

    def _patient(self, node: Mapping[str, Any], path: str) -> None:
        self.fields(node, path, {
            "identifier": self.identifiers, "extension": self.extensions,
            "birthDate": lambda v, p: self.pattern(v, p, DATE, "date"),
            "gender": self._gender, "address": self._addresses})

    def _gender(self, node: Any, path: str) -> None:
        if node not in ("male", "female", "other", "unknown"):
            self.fail(path, "Must be one of male, female, other, unknown.")

    def _addresses(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            if self.obj(item, f"{path}[{i}]"):
                self.fields(item, f"{path}[{i}]", {"postalCode": self.string,
                                                   "use": self.string,
                                                   "period": self.period})

    def _encounter(self, node: Mapping[str, Any], path: str) -> None:
        self.fields(node, path, {
            "status": self.string, "class": self.coding, "type": self.codeables,
            "serviceType": self.codeable, "identifier": self.identifiers,
            "period": self.period, "serviceProvider": self.reference,
            "participant": self._participants})

    def _participants(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            if self.obj(item, f"{path}[{i}]"):
                self.fields(item, f"{path}[{i}]", {"type": self.codeables,
                                                   "individual": self.reference})

    def _condition(self, node: Mapping[str, Any], path: str) -> None:
        self.fields(node, path, {
            "clinicalStatus": self.codeable, "verificationStatus": self.codeable,
            "code": self.codeable, "subject": self.reference,
            "onsetDateTime": self.date_time, "onsetPeriod": self.period})

    def _observation(self, node: Mapping[str, Any], path: str) -> None:
        for required in ("status", "code"):
            if required not in node:
                self.fail(f"{path}.{required}", "Required.")
        self.fields(node, path, {
            "status": self.string, "code": self.codeable, "subject": self.reference,
            "effectiveDateTime": self.date_time, "effectivePeriod": self.period,
            "effectiveInstant": self.instant, "issued": self.instant,
            "component": self._components})
        self.value_x(node, path)

    def _components(self, node: Any, path: str) -> None:
        for i, item in enumerate(self.array(node, path)):
            at = f"{path}[{i}]"
            if self.obj(item, at):
                if "code" not in item:
                    self.fail(f"{at}.code", "Required.")
                else:
                    self.codeable(item["code"], f"{at}.code")
                self.value_x(item, at)


# --------------------------------------------------------------------------- reading helpers
def codings(concept: Any) -> list[tuple[int, Mapping[str, Any]]]:
    if not isinstance(concept, Mapping):
        return []
    items = concept.get("coding")
    return [(i, c) for i, c in enumerate(items) if isinstance(c, Mapping)] \
        if isinstance(items, list) else []


def _key(coding: Mapping[str, Any]) -> tuple[str, str]:
    return (str(coding.get("system", "")).strip(), str(coding.get("code", "")).strip())


def _describe_codes(concept: Any) -> str:
    found = [f"{c.get('system', '?')}|{c.get('code', '?')}" for _, c in codings(concept)]
    return ", ".join(found) if found else "no codings"


def reference_id(reference: str) -> tuple[str | None, str]:
    """'Practitioner/123' or 'https://x/fhir/Practitioner/123/_history/2' -> type and id."""
    parts = [p for p in reference.split("/_history/")[0].split("/") if p]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return None, reference


def slug_source(name: str) -> str:
    """A key name or an issuer as a source: no spaces or control characters, <= 100 chars."""
    text = re.sub(r"[\s\x00-\x1f\x7f]+", "-", name.strip()).strip("-")
    return (text or "fhir")[:100]


def _display(coding: Mapping[str, Any], concept: Mapping[str, Any]) -> str | None:
    text = coding.get("display") or concept.get("text")
    return str(text)[:500] if isinstance(text, str) and text.strip() else None


@dataclass
class _Candidate:
    fact: str
    value: Any
    when: datetime | None
    origin: Origin
    element: str
    priority: int = 1  # a total beats a sum of items given at the same time
    note: str | None = None
    order: int = 0


@dataclass
class _Item:
    fact: str
    code: str
    score: int
    when: datetime | None
    group: str  # one administration: the panel resource, else the effective time
    origin: Origin
    element: str


class _Mapper:
    def __init__(self, resources: Sequence[Located], catalogue: Catalogue,
                 defaults: Defaults) -> None:
        self.resources = resources
        self.catalogue = catalogue
        self.defaults = defaults
        self.result = MappingResult(event={})
        self.candidates: list[_Candidate] = []
        self.items: list[_Item] = []
        self.errors = Checker()
        self.patient: Located | None = None
        self.occurred: datetime | None = None
        self.condition_count = 0

    # bookkeeping
    def ignore(self, loc: Located, reason: str, element: str | None = None) -> None:
        entry: dict[str, Any] = {"from": loc.ref}
        if element:
            entry["element"] = element
        entry["reason"] = reason
        self.result.ignored.append(entry)

    def field(self, name: str, value: Any, loc: Located, element: str, *,
              show: bool = True) -> None:
        self.result.provenance[name] = Origin(loc.ref, loc.at(element))
        entry: dict[str, Any] = {"field": name}
        if show:
            entry["value"] = value
        entry.update({"from": loc.ref, "element": element})
        self.result.mapped.append(entry)

    def offer(self, fact: str, value: Any, when: datetime | None, loc: Located, element: str,
              *, priority: int = 1, note: str | None = None) -> None:
        self.candidates.append(_Candidate(fact, value, when, Origin(loc.ref, loc.at(element)),
                                          element, priority, note, len(self.candidates)))

    # the run
    def run(self) -> MappingResult:
        by_type: dict[str, list[Located]] = {}
        for loc in self.resources:
            by_type.setdefault(loc.type, []).append(loc)
        patients = by_type.get("Patient", [])
        encounters = by_type.get("Encounter", [])
        self._exactly_one("Patient", patients)
        self._exactly_one("Encounter", encounters)
        self.errors.raise_if_any()
        self.patient, encounter = patients[0], encounters[0]
        event = self.result.event
        self._encounter(encounter, event)
        event["person"] = self._patient(self.patient)
        conditions = [c for c in (self._condition(loc) for loc in by_type.get("Condition", []))
                      if c is not None]
        for loc in by_type.get("Observation", []):
            self._observation(loc)
        for loc in self.resources:
            if loc.type not in ("Patient", "Encounter", "Condition", "Observation"):
                self.ignore(loc, f"{loc.type} resources are not used by the mapping.")
        event["facts"] = self._facts()
        event["conditions"] = conditions
        self.errors.raise_if_any()
        return self.result

    def _exactly_one(self, kind: str, found: list[Located]) -> None:
        if not found:
            where = self.resources[0].path.split(".")[0] if self.resources else "Bundle"
            self.errors.fail(f"{where}.entry" if where == "Bundle" else kind,
                             f"{'An' if kind[0] in 'AEIOU' else 'A'} {kind} resource is "
                             "required.")
        for extra in found[1:]:
            self.errors.fail(extra.path, f"A second {kind} ({extra.ref}); exactly one is "
                             "allowed.")

    # ---------------------------------------------------------------- Encounter
    def _encounter(self, loc: Located, event: dict[str, Any]) -> None:
        enc = loc.resource
        status = enc.get("status")
        if status in REFUSED_ENCOUNTER_STATUSES:
            self.errors.fail(loc.at("status"), f"Encounter.status is '{status}': no contact "
                             "took place, so there is nothing to prompt about.")
        # event_id
        if self.defaults.event_id is not None:
            event["event_id"] = self.defaults.event_id
        else:
            ident = enc.get("identifier")
            first = ident[0] if isinstance(ident, list) and ident else None
            if isinstance(first, Mapping) and isinstance(first.get("value"), str):
                self.field("event_id", first["value"], loc, "identifier[0].value")
                event["event_id"] = first["value"]
            elif loc.id:
                self.field("event_id", loc.id, loc, "id")
                event["event_id"] = loc.id
            else:
                self.errors.fail(loc.at("identifier"), "Encounter needs an identifier or an "
                                 "id: it becomes the event_id.")
        event["source"] = self.defaults.source
        self._occurred_at(loc, event)
        self._organisation(loc, event)
        setting, contact_type = self._setting(loc)
        event["setting"] = setting
        event["contact_type"] = contact_type
        staff = self._staff(loc)
        if staff:
            event["staff"] = staff

    def _occurred_at(self, loc: Located, event: dict[str, Any]) -> None:
        if self.defaults.occurred_at is not None:
            when = self.defaults.occurred_at.astimezone(UTC)
            event["occurred_at"] = when.isoformat()
            self.occurred = when
            return
        period = loc.resource.get("period")
        start = period.get("start") if isinstance(period, Mapping) else None
        if start is None and self.defaults.occurred_at_fallback is not None:
            when = self.defaults.occurred_at_fallback.astimezone(UTC)
            event["occurred_at"] = when.isoformat()
            self.occurred = when
            return
        path = loc.at("period.start")
        if start is None:
            self.errors.fail(path, f"Encounter.period.start is required ({loc.ref}): it is "
                             "when the contact happened.")
            return
        if not has_time_and_zone(start):
            self.errors.fail(path, f"Encounter.period.start must be a date-time with a time "
                             f"and a zone offset, e.g. 2026-11-22T09:30:00+00:00 ({loc.ref}).")
            return
        self.occurred = parse_datetime(start)
        self.field("occurred_at", start, loc, "period.start")
        event["occurred_at"] = start

    def _organisation(self, loc: Located, event: dict[str, Any]) -> None:
        provider = loc.resource.get("serviceProvider")
        ident = provider.get("identifier") if isinstance(provider, Mapping) else None
        if isinstance(ident, Mapping) and ident.get("system") == ODS_SYSTEM \
                and isinstance(ident.get("value"), str):
            self.field("organisation", ident["value"], loc, "serviceProvider.identifier.value")
            event["organisation"] = ident["value"]
            return
        if isinstance(provider, Mapping):
            self.ignore(loc, "serviceProvider has no ODS identifier (system "
                        f"{ODS_SYSTEM}); the key's organisation is used.", "serviceProvider")
        self.result.provenance["organisation"] = Origin(loc.ref, loc.at("serviceProvider"))
        if self.defaults.organisation is not None:
            event["organisation"] = self.defaults.organisation

    def _setting(self, loc: Located) -> tuple[str, str]:
        enc = loc.resource
        setting: str | None = None
        contact_type: str | None = None
        settings = self.catalogue.facts["setting"].values or ()
        contact_types = self.catalogue.facts["contact_type"].values or ()
        klass = enc.get("class")
        if isinstance(klass, Mapping):
            system, code = _key(klass)
            mapped = ENCOUNTER_CLASS.get(code) if system == V3_ACT_CODE else None
            if mapped:
                setting, contact_type = mapped
                self.result.mapped.append({"field": "encounter.class", "value": code,
                                           "from": loc.ref, "element": "class"})
            else:
                self.ignore(loc, f"Encounter.class {system}|{code} does not map to a setting "
                            "or contact type.", "class")
        concepts: list[tuple[str, Any]] = []
        if isinstance(enc.get("type"), list):
            concepts += [(f"type[{i}]", c) for i, c in enumerate(enc["type"])]
        if "serviceType" in enc:
            concepts.append(("serviceType", enc["serviceType"]))
        for element, concept in concepts:
            used = False
            for i, coding in codings(concept):
                system, code = _key(coding)
                if system == SETTING_SYSTEM and code in settings:
                    setting, used = code, True
                elif system == CONTACT_TYPE_SYSTEM and code in contact_types:
                    contact_type, used = code, True
                elif system == SNOMED and code in ENCOUNTER_TYPE_SNOMED:
                    contact_type, used = ENCOUNTER_TYPE_SNOMED[code], True
                else:
                    continue
                self.result.mapped.append({"field": f"encounter.{element}", "value": code,
                                           "from": loc.ref, "element": f"{element}.coding[{i}]"})
            if not used:
                self.ignore(loc, f"No coding maps to a setting or contact type "
                            f"({_describe_codes(concept)}).", element)
        return setting or "other", contact_type or "other"

    def _staff(self, loc: Located) -> dict[str, Any]:
        """Staff from the first participant (CDS: from context.userId)."""
        staff: dict[str, Any] = {}
        if self.defaults.staff_reference:
            kind, ident = reference_id(self.defaults.staff_reference)
            staff["id"] = ident if kind == "Practitioner" else self.defaults.staff_reference
            self.result.provenance["staff.id"] = Origin(self.defaults.staff_reference,
                                                        self.defaults.staff_origin)
            self.result.mapped.append({"field": "staff.id", "value": staff["id"],
                                       "from": self.defaults.staff_reference,
                                       "element": self.defaults.staff_origin})
        participants = loc.resource.get("participant")
        first = participants[0] if isinstance(participants, list) and participants else None
        if not isinstance(first, Mapping):
            return staff
        individual = first.get("individual")
        if "id" not in staff and isinstance(individual, Mapping):
            found = self._participant_id(individual)
            if found:
                staff["id"] = found[0]
                self.field("staff.id", found[0], loc, f"participant[0].individual.{found[1]}")
            else:
                self.ignore(loc, "The first participant has no individual reference or "
                            "identifier.", "participant[0].individual")
        role = self._role(first, loc, "participant[0]")
        if role:
            staff["role"] = role
        return staff

    def _participant_id(self, individual: Mapping[str, Any]) -> tuple[str, str] | None:
        ref = individual.get("reference")
        if isinstance(ref, str) and ref.strip():
            target = self._resolve(ref)
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

    def _role(self, part: Mapping[str, Any], loc: Located, element: str) -> str | None:
        roles = self.catalogue.facts["staff_role"].values or ()
        types = part.get("type")
        for t, concept in enumerate(types if isinstance(types, list) else []):
            for i, coding in codings(concept):
                system, code = _key(coding)
                role = code if system == STAFF_ROLE_SYSTEM and code in roles else (
                    STAFF_ROLE_SNOMED.get(code) if system == SNOMED else None)
                if role:
                    self.field("staff.role", role, loc, f"{element}.type[{t}].coding[{i}]")
                    return role
            self.ignore(loc, f"participant type does not name a staff role "
                        f"({_describe_codes(concept)}).", f"{element}.type[{t}]")
        return None

    def _resolve(self, reference: str) -> Located | None:
        for loc in self.resources:
            if loc.full_url and loc.full_url == reference:
                return loc
        return None

    # ---------------------------------------------------------------- Patient
    def _patient(self, loc: Located) -> dict[str, Any]:
        pat = loc.resource
        person: dict[str, Any] = {}
        if loc.id:
            person["id"] = loc.id
            self.field("person.id", loc.id, loc, "id")
        else:
            self.errors.fail(loc.at("id"), "Patient.id is required: it becomes person.id.")
        for i, ident in enumerate(pat.get("identifier") or []):
            if isinstance(ident, Mapping) and ident.get("system") == NHS_NUMBER_SYSTEM \
                    and isinstance(ident.get("value"), str):
                person["nhs_number"] = ident["value"]
                self.field("person.nhs_number", None, loc, f"identifier[{i}].value", show=False)
                break
        birth = pat.get("birthDate")
        if isinstance(birth, str):
            if len(birth) == 10:
                person["birth_date"] = birth
                self.field("person.birth_date", birth, loc, "birthDate")
            else:
                self.ignore(loc, "birthDate is partial; a full date is needed to work out "
                            "the age.", "birthDate")
        self.result.provenance.setdefault("person.birth_date", Origin(loc.ref,
                                                                      loc.at("birthDate")))
        self.result.provenance.setdefault("person.age", Origin(loc.ref, loc.at("birthDate")))
        gender = pat.get("gender")
        if isinstance(gender, str):
            person["sex"] = gender
            self.field("person.sex", gender, loc, "gender")
        self._ethnicity(loc, person)
        self._postcode(loc, person)
        return person

    def _ethnicity(self, loc: Located, person: dict[str, Any]) -> None:
        for e, ext in enumerate(loc.resource.get("extension") or []):
            if not isinstance(ext, Mapping) or ext.get("url") != ETHNIC_CATEGORY_URL:
                continue
            concept = ext.get("valueCodeableConcept")
            for i, coding in codings(concept):
                system, code = _key(coding)
                if "EthnicCategory" in system and code.upper() in ETHNIC_CATEGORY:
                    group = ETHNIC_CATEGORY[code.upper()]
                    person["ethnicity_group"] = group
                    self.field("person.ethnicity_group", group, loc,
                               f"extension[{e}].valueCodeableConcept.coding[{i}]")
                    return
            self.ignore(loc, "The ethnic category is not one of the NHS ethnic category codes "
                        f"A-Z ({_describe_codes(concept)}).", f"extension[{e}]")

    def _postcode(self, loc: Located, person: dict[str, Any]) -> None:
        addresses = [a for a in loc.resource.get("address") or [] if isinstance(a, Mapping)]
        if not addresses:
            return
        current = [(i, a) for i, a in enumerate(loc.resource.get("address") or [])
                   if isinstance(a, Mapping) and a.get("use") != "old"
                   and not (isinstance(a.get("period"), Mapping) and a["period"].get("end"))]
        if not current:
            self.ignore(loc, "Every address is an old one; no postcode district is sent.",
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
            self.ignore(loc, f"postalCode '{raw}' is not a UK postcode.",
                        f"address[{index}].postalCode")
            return
        person["postcode_district"] = district
        self.field("person.postcode_district", district, loc, f"address[{index}].postalCode")

    def _about_patient(self, loc: Located, element: str = "subject") -> bool:
        subject = loc.resource.get(element)
        ref = subject.get("reference") if isinstance(subject, Mapping) else None
        if not isinstance(ref, str) or self.patient is None:
            return True
        patient = self.patient
        if ref == patient.full_url:
            return True
        kind, ident = reference_id(ref)
        if kind == "Patient" and ident == patient.id:
            return True
        self.ignore(loc, f"It is about {ref}, not the Patient of this request ({patient.ref}).",
                    element)
        return False

    # ---------------------------------------------------------------- Condition
    def _condition(self, loc: Located) -> dict[str, Any] | None:
        cond = loc.resource
        if not self._about_patient(loc):
            return None
        clinical = [c.get("code") for _, c in codings(cond.get("clinicalStatus"))
                    if c.get("system") in (CONDITION_CLINICAL, None)]
        if clinical and not any(c in ACTIVE_CLINICAL_STATUSES for c in clinical):
            self.ignore(loc, f"clinicalStatus is {', '.join(map(str, clinical))}, not active.",
                        "clinicalStatus")
            return None
        if not clinical and any(k.startswith("abatement") for k in cond):
            self.ignore(loc, "No clinicalStatus, and it has abated.", "abatement[x]")
            return None
        verification = [c.get("code") for _, c in codings(cond.get("verificationStatus"))
                        if c.get("system") in (CONDITION_VERIFICATION, None)]
        bad = [v for v in verification if v in UNUSABLE_VERIFICATION]
        if bad:
            self.ignore(loc, f"verificationStatus is {bad[0]}; only confirmed conditions are "
                        "used.", "verificationStatus")
            return None
        concept = cond.get("code")
        usable: list[tuple[int, Mapping[str, Any]]] = []
        for i, coding in codings(concept):
            system, code = _key(coding)
            if system not in CODE_SYSTEMS:
                self.ignore(loc, f"Code system {system or '(none)'} is not used (SNOMED CT "
                            "and ICD-10 are).", f"code.coding[{i}]")
            elif not (SNOMED_CODE if system == SNOMED else ICD10_CODE).match(code):
                self.ignore(loc, f"'{code}' is not a valid {system} code.", f"code.coding[{i}]")
            else:
                usable.append((i, coding))
        if not usable:
            self.ignore(loc, "No SNOMED CT or ICD-10 coding to map to a condition group.",
                        "code")
            return None

        def rank(item: tuple[int, Mapping[str, Any]]) -> tuple[int, int, int]:
            system, code = _key(item[1])
            grouped = bool(self.catalogue.groups_for_code(system, code))
            return (0 if grouped else 1, 0 if system == SNOMED else 1, item[0])

        usable.sort(key=rank)
        index, chosen = usable[0]
        for i, _ in usable[1:]:
            self.ignore(loc, f"Another coding of this Condition was used "
                        f"(code.coding[{index}]).", f"code.coding[{i}]")
        system, code = _key(chosen)
        item: dict[str, Any] = {"system": system, "code": code}
        display = _display(chosen, concept if isinstance(concept, Mapping) else {})
        if display:
            item["display"] = display
        onset = self._onset(loc)
        if onset:
            item["onset_date"] = onset[0]
        position = self.condition_count
        self.condition_count += 1
        self.result.provenance[f"conditions.{position}"] = Origin(
            loc.ref, loc.at(f"code.coding[{index}]"))
        if onset:
            self.result.provenance[f"conditions.{position}.onset_date"] = Origin(
                loc.ref, loc.at(onset[1]))
        groups = list(self.catalogue.groups_for_code(system, code))
        entry: dict[str, Any] = {"condition": dict(item), "groups": groups, "from": loc.ref,
                                 "element": f"code.coding[{index}]"}
        self.result.mapped.append(entry)
        return item

    def _onset(self, loc: Located) -> tuple[str, str] | None:
        cond = loc.resource
        raw = cond.get("onsetDateTime")
        element = "onsetDateTime"
        if raw is None and isinstance(cond.get("onsetPeriod"), Mapping):
            raw, element = cond["onsetPeriod"].get("start"), "onsetPeriod.start"
        if not isinstance(raw, str):
            other = [k for k in cond if k.startswith("onset") and k not in (
                "onsetDateTime", "onsetPeriod")]
            if other:
                self.ignore(loc, f"{other[0]} is not read; only onsetDateTime and "
                            "onsetPeriod.start give an onset date.", other[0])
            return None
        if len(raw) < 10:
            self.ignore(loc, "The onset date is partial; it is not sent.", element)
            return None
        return raw[:10], element

    # ---------------------------------------------------------------- Observation
    def _observation(self, loc: Located) -> None:
        obs = loc.resource
        status = obs.get("status")
        if status not in USABLE_OBSERVATION_STATUSES:
            self.ignore(loc, f"status '{status}' is not a usable result.", "status")
            return
        if not self._about_patient(loc):
            return
        when = self._effective(obs)
        if when is not None and self.occurred is not None and when > self.occurred:
            self.ignore(loc, "It is dated after the contact.", "effective[x]")
            return
        handlers: dict[str, tuple[int, Mapping[str, Any]]] = {}
        for i, coding in codings(obs.get("code")):
            kind = self._kind(_key(coding))
            if kind is not None and kind not in handlers:
                handlers[kind] = (i, coding)
        if not handlers:
            self.ignore(loc, "No coding of Observation.code is in the code table "
                        f"({_describe_codes(obs.get('code'))}).", "code")
            return
        if "dataAbsentReason" in obs and not isinstance(obs.get("component"), list):
            self.ignore(loc, f"dataAbsentReason: {self._absent(obs)}.", "dataAbsentReason")
            return
        for kind, (_, coding) in handlers.items():
            self._handle(kind, _key(coding), loc, when)

    def _kind(self, key: tuple[str, str]) -> str | None:
        system, code = key
        if key in NUMERIC_CODES:
            return f"numeric:{NUMERIC_CODES[key][0]}:{system}|{code}"
        if key in BP_PANELS:
            return "bp-panel"
        if key in SYSTOLIC:
            return "systolic"
        if key in DIASTOLIC:
            return "diastolic"
        if key in SMOKING_STATUS_CODES:
            return "smoking-value"
        if system == SNOMED and code in SMOKING_VALUES:
            return f"smoking-finding:{code}"
        if key in SCORE_PANELS:
            return f"panel:{code}"
        if system == LOINC and code in ITEM_SCALE:
            return f"item:{code}"
        if system == FACT_SYSTEM and code in self.catalogue.sent_facts:
            return f"fact:{code}"
        return None

    def _handle(self, kind: str, key: tuple[str, str], loc: Located,
                when: datetime | None) -> None:
        obs = loc.resource
        if kind.startswith("numeric:"):
            self._numeric(NUMERIC_CODES[key], obs, loc, "", when, key)
        elif kind == "bp-panel":
            self._bp_panel(loc, when)
        elif kind == "systolic":
            self._numeric("systolic_bp", obs, loc, "", when, key)
        elif kind == "diastolic":
            self._numeric("diastolic_bp", obs, loc, "", when, key)
        elif kind == "smoking-value":
            self._smoking_value(loc, when)
        elif kind.startswith("smoking-finding:"):
            code = kind.split(":", 1)[1]
            self.offer("smoking_status", SMOKING_VALUES[code], when, loc, "code")
        elif kind.startswith("panel:"):
            self._score_panel(SCORE_PANELS[key], loc, when)
        elif kind.startswith("item:"):
            self._item(key[1], obs, loc, "", when, group=f"time:{when}")
        elif kind.startswith("fact:"):
            self._catalogue_fact(key[1], obs, loc, when)

    @staticmethod
    def _effective(obs: Mapping[str, Any]) -> datetime | None:
        for name in ("effectiveDateTime", "effectiveInstant"):
            if isinstance(obs.get(name), str):
                return parse_datetime(obs[name])
        period = obs.get("effectivePeriod")
        if isinstance(period, Mapping) and isinstance(period.get("start"), str):
            return parse_datetime(period["start"])
        if isinstance(obs.get("issued"), str):
            return parse_datetime(obs["issued"])
        return None

    @staticmethod
    def _absent(node: Mapping[str, Any]) -> str:
        reason = node.get("dataAbsentReason")
        codes = [str(c.get("code")) for _, c in codings(reason)]
        text = reason.get("text") if isinstance(reason, Mapping) else None
        return ", ".join(codes) or (text if isinstance(text, str) else "no value")

    def _number(self, node: Mapping[str, Any], loc: Located, prefix: str,
                default_unit: str | None = None
                ) -> tuple[float | int, str | None, str] | None:
        """The numeric value of an Observation or component: (value, unit, element)."""
        at = f"{prefix}." if prefix else ""
        if "dataAbsentReason" in node and not any(k.startswith("value") for k in node):
            self.ignore(loc, f"dataAbsentReason: {self._absent(node)}.",
                        f"{at}dataAbsentReason")
            return None
        quantity = node.get("valueQuantity")
        if isinstance(quantity, Mapping):
            value = quantity.get("value")
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.ignore(loc, "valueQuantity has no numeric value.", f"{at}valueQuantity")
                return None
            if quantity.get("comparator"):
                self.ignore(loc, f"The value is {quantity['comparator']}{value}, not a "
                            "measurement.", f"{at}valueQuantity.comparator")
                return None
            unit = quantity.get("code") if quantity.get("system") == UCUM and \
                quantity.get("code") else quantity.get("unit") or quantity.get("code")
            return value, unit if isinstance(unit, str) else default_unit, \
                f"{at}valueQuantity.value"
        if "valueInteger" in node and not isinstance(node["valueInteger"], bool) \
                and isinstance(node["valueInteger"], int | float):
            return node["valueInteger"], default_unit, f"{at}valueInteger"
        present = next((k for k in node if k.startswith("value")), None)
        self.ignore(loc, f"{present or 'No value'}: a number was expected.",
                    f"{at}{present or 'value[x]'}")
        return None

    def _numeric(self, fact: str, node: Mapping[str, Any], loc: Located, prefix: str,
                 when: datetime | None, key: tuple[str, str]) -> None:
        found = self._number(node, loc, prefix, DEFAULT_UNIT.get(key))
        if found is None:
            return
        raw, unit, element = found
        note = None
        if fact == "hba1c_mmol_mol":
            if unit is None:
                unit = "mmol/mol"
            if unit == "%":
                value: Any = round((raw - 2.15) * 10.929, 1)
                note = f"converted from {raw} % (IFCC = (DCCT - 2.15) x 10.929)"
            elif unit == "mmol/mol":
                value = round(float(raw), 1)
            else:
                self.ignore(loc, f"Unit '{unit}' cannot be converted to mmol/mol.", element)
                return
        else:
            spec = self.catalogue.facts[fact]
            factor = 1.0 if unit is not None and unit == spec.unit else _unit_factor(fact, unit)
            if factor is None:
                self.ignore(loc, f"Unit '{unit}' cannot be converted to {spec.unit}.", element)
                return
            value = raw * factor
            if factor != 1.0:
                note = f"converted from {raw} {unit}"
            value = self._typed(fact, value)
        self.offer(fact, value, when, loc, element, priority=2, note=note)

    def _typed(self, fact: str, value: Any) -> Any:
        spec = self.catalogue.facts[fact]
        if spec.type == "int" and isinstance(value, float):
            if fact in ("systolic_bp", "diastolic_bp"):
                return int(value + 0.5) if value >= 0 else round(value)
            return int(value) if value.is_integer() else value
        if spec.type == "double" and isinstance(value, int):
            return float(value)
        return value

    def _bp_panel(self, loc: Located, when: datetime | None) -> None:
        components = loc.resource.get("component")
        if not isinstance(components, list) or not components:
            self.ignore(loc, "A blood pressure panel without components.", "component")
            return
        for c, comp in enumerate(components):
            if not isinstance(comp, Mapping):
                continue
            keys = [_key(cd) for _, cd in codings(comp.get("code"))]
            fact = "systolic_bp" if any(k in SYSTOLIC for k in keys) else (
                "diastolic_bp" if any(k in DIASTOLIC for k in keys) else None)
            if fact is None:
                self.ignore(loc, "Not a systolic or diastolic component "
                            f"({_describe_codes(comp.get('code'))}).", f"component[{c}]")
                continue
            key = next(k for k in keys if k in (SYSTOLIC | DIASTOLIC))
            self._numeric(fact, comp, loc, f"component[{c}]", when, key)

    def _smoking_value(self, loc: Located, when: datetime | None) -> None:
        concept = loc.resource.get("valueCodeableConcept")
        for i, coding in codings(concept):
            system, code = _key(coding)
            if system == SNOMED and code in SMOKING_VALUES:
                self.offer("smoking_status", SMOKING_VALUES[code], when, loc,
                           f"valueCodeableConcept.coding[{i}]")
                return
        if concept is None:
            self.ignore(loc, "A smoking status without valueCodeableConcept.", "value[x]")
        else:
            self.ignore(loc, "The smoking status value is not a known SNOMED CT code "
                        f"({_describe_codes(concept)}).", "valueCodeableConcept")

    def _score_panel(self, total_fact: str | None, loc: Located,
                     when: datetime | None) -> None:
        obs = loc.resource
        if total_fact and any(k.startswith("value") for k in obs):
            self._numeric(total_fact, obs, loc, "", when, ("", ""))
        components = obs.get("component")
        for c, comp in enumerate(components if isinstance(components, list) else []):
            if not isinstance(comp, Mapping):
                continue
            keys = [_key(cd) for _, cd in codings(comp.get("code"))]
            if (LOINC, "55758-7") in keys:
                self._numeric("phq2", comp, loc, f"component[{c}]", when, (LOINC, "55758-7"))
                continue
            item = next((code for system, code in keys
                         if system == LOINC and code in ITEM_SCALE), None)
            if item is None:
                self.ignore(loc, "Not a total or a two-item-scale item "
                            f"({_describe_codes(comp.get('code'))}).", f"component[{c}]")
                continue
            self._item(item, comp, loc, f"component[{c}]", when, group=f"panel:{loc.path}")

    def _item(self, code: str, node: Mapping[str, Any], loc: Located, prefix: str,
              when: datetime | None, *, group: str) -> None:
        at = f"{prefix}." if prefix else ""
        score: int | None = None
        element = f"{at}value[x]"
        concept = node.get("valueCodeableConcept")
        if "dataAbsentReason" in node and not any(k.startswith("value") for k in node):
            self.ignore(loc, f"dataAbsentReason: {self._absent(node)}.", f"{at}dataAbsentReason")
            return
        for i, coding in codings(concept):
            answer = str(coding.get("code"))
            if answer in ITEM_ANSWERS:
                score, element = ITEM_ANSWERS[answer], f"{at}valueCodeableConcept.coding[{i}]"
                break
        if score is None:
            raw = node.get("valueInteger")
            if raw is None and isinstance(node.get("valueQuantity"), Mapping):
                raw, element = node["valueQuantity"].get("value"), f"{at}valueQuantity.value"
            else:
                element = f"{at}valueInteger"
            if isinstance(raw, int | float) and not isinstance(raw, bool) \
                    and float(raw).is_integer() and 0 <= raw <= 3:
                score = int(raw)
        if score is None:
            self.ignore(loc, f"Item {code} has no answer scored 0-3.", f"{at}value[x]")
            return
        self.items.append(_Item(ITEM_SCALE[code], code, score, when, group,
                                Origin(loc.ref, loc.at(element)), element))

    def _catalogue_fact(self, fact: str, obs: Mapping[str, Any], loc: Located,
                        when: datetime | None) -> None:
        spec = self.catalogue.facts[fact]
        if spec.type in ("int", "double"):
            self._numeric(fact, obs, loc, "", when, (FACT_SYSTEM, fact))
            return
        if spec.type == "bool":
            if isinstance(obs.get("valueBoolean"), bool):
                self.offer(fact, obs["valueBoolean"], when, loc, "valueBoolean", priority=2)
            else:
                self.ignore(loc, f"{fact} needs valueBoolean.", "value[x]")
            return
        if isinstance(obs.get("valueString"), str):
            self.offer(fact, obs["valueString"].strip(), when, loc, "valueString", priority=2)
            return
        for i, coding in codings(obs.get("valueCodeableConcept")):
            if coding.get("system") == FACT_SYSTEM and isinstance(coding.get("code"), str):
                self.offer(fact, coding["code"], when, loc,
                           f"valueCodeableConcept.coding[{i}]", priority=2)
                return
        self.ignore(loc, f"{fact} needs valueString or a valueCodeableConcept coding in "
                    f"{FACT_SYSTEM}.", "value[x]")

    # ---------------------------------------------------------------- facts
    def _sum_items(self) -> None:
        groups: dict[tuple[str, str], dict[str, _Item]] = {}
        for item in self.items:
            slot = groups.setdefault((item.fact, item.group), {})
            slot[item.code] = item  # a repeated item within one administration: the last
        used: set[int] = set()
        for (fact, _), found in groups.items():
            first, second = SCALE_ITEMS[fact]
            if first in found and second in found:
                a, b = found[first], found[second]
                when = max((t for t in (a.when, b.when) if t is not None), default=None)
                same = a.origin.ref == b.origin.ref
                ref = a.origin.ref if same else f"{a.origin.ref} + {b.origin.ref}"
                self.candidates.append(_Candidate(
                    fact, a.score + b.score, when, Origin(ref, a.origin.path),
                    a.element if same else "value[x]", priority=1,
                    note=f"sum of items {first} ({a.score}) and {second} ({b.score})",
                    order=len(self.candidates)))
                used.update((id(a), id(b)))
        for item in self.items:
            if id(item) not in used:
                other = [c for c in SCALE_ITEMS[item.fact] if c != item.code][0]
                self.result.ignored.append({
                    "from": item.origin.ref, "element": item.element,
                    "reason": f"{item.fact} item {item.code} without item {other} from the "
                              "same administration; a sum needs both."})

    def _facts(self) -> dict[str, Any]:
        self._sum_items()
        floor = datetime.min.replace(tzinfo=UTC)
        best: dict[str, _Candidate] = {}
        for cand in self.candidates:
            held = best.get(cand.fact)
            rank = (cand.when or floor, cand.priority, cand.order)
            if held is None or rank > (held.when or floor, held.priority, held.order):
                best[cand.fact] = cand
        facts: dict[str, Any] = {}
        for cand in self.candidates:
            winner = best[cand.fact]
            if cand is not winner:
                self.result.ignored.append({
                    "from": cand.origin.ref, "element": cand.element,
                    "reason": f"{cand.fact}: a later or more direct value was used "
                              f"({winner.origin.ref})."})
        for fact in sorted(best, key=lambda f: best[f].order):
            cand = best[fact]
            facts[fact] = cand.value
            self.result.provenance[f"facts.{fact}"] = cand.origin
            entry: dict[str, Any] = {"fact": fact, "value": cand.value, "from": cand.origin.ref,
                                     "element": cand.element}
            if cand.when is not None:
                entry["effective"] = cand.when.isoformat()
            if cand.note:
                entry["note"] = cand.note
            self.result.mapped.append(entry)
        return facts


# --------------------------------------------------------------------------- entry points
def check_resources(resources: Iterable[Located], checker: Checker | None = None) -> Checker:
    checker = checker or Checker()
    for loc in resources:
        if not loc.synthetic:
            checker.resource(loc)
    return checker


def map_resources(resources: Sequence[Located], *, catalogue: Catalogue,
                  defaults: Defaults) -> MappingResult:
    """Map located resources to a contact event (raises ValidationFailed when structurally bad)."""
    check_resources(resources).raise_if_any()
    return _Mapper(resources, catalogue, defaults).run()


def bundle_resources(body: Any) -> list[Located]:
    """The resources of a collection or transaction Bundle, checked for shape."""
    checker = Checker()
    if not isinstance(body, Mapping):
        checker.fail("Bundle", "The body must be a FHIR Bundle (a JSON object).")
        checker.raise_if_any()
    if body.get("resourceType") != "Bundle":
        checker.fail("Bundle.resourceType", "Must be 'Bundle' (send a collection or "
                     "transaction Bundle holding a Patient, an Encounter, Conditions and "
                     "Observations).")
        checker.raise_if_any()
    if body.get("type") not in BUNDLE_TYPES:
        checker.fail("Bundle.type", f"Must be one of {', '.join(BUNDLE_TYPES)}.")
    entries = body.get("entry", [])
    found: list[Located] = []
    for i, entry in enumerate(checker.array(entries, "Bundle.entry")):
        path = f"Bundle.entry[{i}]"
        if not checker.obj(entry, path):
            continue
        request = entry.get("request")
        if isinstance(request, Mapping) and request.get("method") == "DELETE":
            continue
        full_url = entry.get("fullUrl")
        if full_url is not None and not checker.string(full_url, f"{path}.fullUrl"):
            full_url = None
        resource = entry.get("resource")
        if resource is None:
            checker.fail(f"{path}.resource", "Required: every entry must hold a resource.")
            continue
        if not checker.obj(resource, f"{path}.resource"):
            continue
        if not isinstance(resource.get("resourceType"), str) or not resource["resourceType"]:
            checker.fail(f"{path}.resource.resourceType", "Required (a string such as "
                         "'Observation').")
            continue
        found.append(Located(resource, f"{path}.resource", full_url))
    checker.raise_if_any()
    return found


def map_bundle(body: Any, *, catalogue: Catalogue, defaults: Defaults) -> MappingResult:
    return map_resources(bundle_resources(body), catalogue=catalogue, defaults=defaults)


def explain_errors(errors: Mapping[str, list[str]], provenance: Mapping[str, Origin]
                   ) -> dict[str, list[str]]:
    """The contact event's validation errors, each also under the FHIR element it came from.

    `facts.bmi: Must be between 10 and 100.` becomes that message (naming Observation/bmi-1)
    under `facts.bmi` and under `Bundle.entry[2].resource.valueQuantity.value`.
    """
    out: dict[str, list[str]] = {}
    for path, messages in errors.items():
        origin = _origin_for(path, provenance)
        if origin is None:
            out.setdefault(path, []).extend(messages)
            continue
        out.setdefault(path, []).extend(f"{m} (from {origin.ref}, {origin.path})"
                                        for m in messages)
        out.setdefault(origin.path, []).extend(f"{path}: {m} ({origin.ref})" for m in messages)
    return out


def _origin_for(path: str, provenance: Mapping[str, Origin]) -> Origin | None:
    parts = path.split(".")
    while parts:
        origin = provenance.get(".".join(parts))
        if origin is not None:
            return origin
        parts.pop()
    return None
