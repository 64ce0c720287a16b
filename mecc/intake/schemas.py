"""The contact event: what integrators send, validated against the fact catalogue and value sets.

The schemas are built from the loaded catalogue, so a fact added to config/facts.yaml is accepted
and documented in the OpenAPI spec without a code change.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import marshmallow as ma
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from mecc.clinical.catalogue import (
    CODE_SYSTEMS,
    DMD,
    MEDICATION_SYSTEMS,
    SNOMED,
    Catalogue,
    FactSpec,
)
from mecc.clinical.recency import after_contact
from mecc.intake.pseudonym import is_valid_nhs_number, normalise_nhs_number
from mecc.platform.fields import (
    IDENT,
    SLUG,
    Schema,
    StrictBoolean,
    StrictFloat,
    StrictInteger,
    StrictString,
    one_of,
)

FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_CONDITIONS = 100  # distinct codes (or groups): a record lists one code many times
MAX_CONDITION_ENTRIES = 3 * MAX_CONDITIONS  # a bound on the list itself
MAX_MEDICATIONS = 100
MAX_DECLINED_TOPICS = 30
ODS = validate.Regexp(r"^[A-Za-z0-9]{3,10}$", error="Must be an ODS code (3-10 letters/digits).")
POSTCODE_DISTRICT = validate.Regexp(
    r"^[A-Za-z]{1,2}[0-9][A-Za-z0-9]?$", error="Must be a postcode district such as M14 or EC1A.")
# person.display: one line of printable text (no control characters, no line breaks).
MAX_DISPLAY = 100
DISPLAY_TEXT = validate.Regexp(r"^[^\x00-\x1f\x7f]*$",
                               error="Must be one line of text without control characters.")
SNOMED_CODE = re.compile(r"^[1-9][0-9]{5,17}$")
ICD10_CODE = re.compile(r"^[A-Za-z][0-9]{2}(\.?[0-9A-Za-z]{1,4})?$")


def _choices(catalogue: Catalogue, fact: str) -> tuple[str, ...]:
    values = catalogue.facts[fact].values
    if not values:
        raise ValueError(f"the catalogue fact {fact!r} must list its values")
    return values


def _fact_field(spec: FactSpec) -> fields.Field:
    meta: dict[str, Any] = {"description": spec.description}
    if spec.unit:
        meta["description"] += f" Unit: {spec.unit}."
    validators: list[Any] = []
    if spec.min is not None or spec.max is not None:
        validators.append(validate.Range(min=spec.min, max=spec.max,
                                         error="Must be between {min} and {max}."))
    if spec.type == "int":
        return StrictInteger(validate=validators, allow_none=True, metadata=meta)
    if spec.type == "double":
        return StrictFloat(validate=validators, allow_none=True, allow_nan=False, metadata=meta)
    if spec.type == "bool":
        return StrictBoolean(allow_none=True, metadata=meta)
    if spec.values:
        validators.append(one_of(spec.values))
    return StrictString(validate=validators + [validate.Length(max=100)], allow_none=True,
                        metadata=meta)


def _check_no_credentials(value: str) -> None:
    # A URL's user:password would be stored with the event and listed, with its deliveries,
    # to every key of the organisation. Receivers authenticate us by the webhook signature.
    try:
        netloc = urlsplit(value).netloc
    except ValueError:  # "http://[": not a URL at all, which the URL check says
        return
    if "@" in netloc:
        raise ValidationError("Must not carry a user name or password; the webhook signature "
                              "authenticates each delivery.")


def _check_nhs_number(value: str) -> None:
    if not is_valid_nhs_number(normalise_nhs_number(value)):
        raise ValidationError("Not a valid NHS number (10 digits, modulus-11 check).")


FACT_DATE_ERROR = ("Must be a date (2026-03-03) or a date-time with a zone offset "
                   "(2026-03-03T09:30:00+00:00).")


def parse_fact_date(value: Any) -> date | datetime:
    """When a fact was recorded: a date, or a date-time with a zone offset (else ValueError)."""
    if not isinstance(value, str):
        raise ValueError(FACT_DATE_ERROR)
    text = value.strip()
    if len(text) == 10:
        return date.fromisoformat(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(FACT_DATE_ERROR)
    return moment


AWARE_DATETIME_ERRORS: dict[str, str | list[Any] | dict[Any, Any]] = {
    "invalid": "Not a valid ISO 8601 date-time.",
    "invalid_awareness": "Must include a zone offset, e.g. 2026-11-22T09:30:00+00:00.",
}


def _distinct_conditions(items: list[Any]) -> None:
    """At most MAX_CONDITIONS distinct codes (a code listed twice, with two onset dates, counts
    once) in at most MAX_CONDITION_ENTRIES entries."""
    if len(items) > MAX_CONDITION_ENTRIES:
        raise ValidationError(f"At most {MAX_CONDITION_ENTRIES} entries.")
    distinct = {(i.get("system"), i.get("code"), i.get("group")) for i in items
                if isinstance(i, dict)}
    if len(distinct) > MAX_CONDITIONS:
        raise ValidationError(f"At most {MAX_CONDITIONS} distinct codes (this has "
                              f"{len(distinct)}).")


def build_event_schemas(catalogue: Catalogue) -> type[ma.Schema]:
    """The ContactEvent schema class for this catalogue."""
    sent = catalogue.sent_facts
    derived = sorted(n for n, f in catalogue.facts.items() if not f.is_sent)
    groups = sorted(catalogue.groups)

    class KnownFactsSchema(Schema):
        """Facts known at this contact; leave a fact out when it is not known."""

        class Meta:
            # Unknown names are reported below with a did-you-mean, together with the
            # errors of the known facts, so one round trip shows every problem.
            unknown = ma.EXCLUDE

        @validates_schema(pass_original=True, skip_on_field_errors=False)
        def _known_facts_only(self, _data: Any, original: Any, **_: Any) -> None:
            if not isinstance(original, dict):
                return
            errors: dict[str, list[str]] = {}
            for name in original:
                if name in sent:
                    continue
                if name in derived:
                    errors[name] = [f"'{name}' is derived from the event; send it in person, "
                                    "staff or the event itself, not in facts."]
                    continue
                close = difflib.get_close_matches(str(name), list(sent), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                errors[str(name)] = [f"Unknown fact.{hint}"]
            if errors:
                raise ValidationError(errors)

        @post_load
        def _absent_is_absent(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
            # A null means "not known": it is dropped, never stored as null.
            return {k: v for k, v in data.items() if v is not None}

    # One field per fact the catalogue lets events send, named by the fact.
    facts_schema = type("Facts", (KnownFactsSchema,),
                        {name: _fact_field(spec) for name, spec in sent.items()})

    class StaffSchema(Schema):
        id = StrictString(validate=[validate.Length(max=100), IDENT],
                          metadata={"example": "st-991"})
        role = StrictString(validate=one_of(_choices(catalogue, "staff_role")))
        team = StrictString(validate=validate.Length(max=100), metadata={"example": "blue"})

    class PersonSchema(Schema):
        id = StrictString(required=True, validate=[validate.Length(max=100), IDENT],
                          metadata={"description": "Pseudonymous id chosen by the integrator.",
                                    "example": "p-7f3a1c"})
        nhs_number = StrictString(
            load_only=True, validate=_check_nhs_number,
            metadata={"description": "10 digits passing the modulus-11 check; stored only as a "
                      "keyed hash, never echoed.", "example": "9434765919"})
        age = StrictInteger(validate=validate.Range(min=0, max=130,
                                                    error="Must be between {min} and {max}."))
        birth_date = fields.Date(metadata={"example": "1971-04-02"})
        sex = StrictString(validate=one_of(_choices(catalogue, "sex")))
        ethnicity_group = StrictString(validate=[validate.Length(max=40), SLUG],
                                       metadata={"example": "south_asian"})
        postcode_district = StrictString(validate=POSTCODE_DISTRICT, metadata={"example": "M14"})
        display = StrictString(
            allow_none=True, validate=[validate.Length(min=1, max=MAX_DISPLAY), DISPLAY_TEXT],
            metadata={"description": "The label staff see on their screen for this person. "
                      "Held only for direct care: returned on prompts and stream messages, "
                      "never logged, reported or exported, and erased "
                      "MECC_DISPLAY_RETENTION_HOURS (default 24) after the contact.",
                      "example": "Ann Example, 54 F, MRN 1234"})

        @validates_schema
        def _age_or_birth_date(self, data: dict[str, Any], **_: Any) -> None:
            if "age" not in data and "birth_date" not in data:
                message = "Give person.age or person.birth_date."
                raise ValidationError({"age": [message], "birth_date": [message]})

        @post_load
        def _normalise(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
            if "nhs_number" in data:
                data["nhs_number"] = normalise_nhs_number(data["nhs_number"])
            if "postcode_district" in data:
                data["postcode_district"] = data["postcode_district"].upper()
            return data

    class ConditionSchema(Schema):
        system = StrictString(validate=one_of(CODE_SYSTEMS),
                              metadata={"example": SNOMED})
        code = StrictString(validate=validate.Length(max=20), metadata={"example": "44054006"})
        display = fields.String(validate=validate.Length(max=500))
        onset_date = fields.Date(metadata={"example": "2026-09-30"})
        group = StrictString(validate=one_of(groups),
                             metadata={"description": "A condition group, when the sender has "
                                       "mapped its codes already."})

        @validates_schema
        def _coded_or_grouped(self, data: dict[str, Any], **_: Any) -> None:
            if "group" in data:
                if "code" in data or "system" in data:
                    raise ValidationError("Give either group, or system and code, not both.",
                                          "group")
                return
            missing = {k: ["Required unless group is given."]
                       for k in ("system", "code") if k not in data}
            if missing:
                raise ValidationError(missing)
            code = data["code"]
            if data["system"] == SNOMED and not SNOMED_CODE.match(code):
                raise ValidationError("Not a SNOMED CT concept id (6-18 digits).", "code")
            if data["system"] != SNOMED and not ICD10_CODE.match(code):
                raise ValidationError("Not an ICD-10 code (such as E11 or J44.9).", "code")

    class MedicationSchema(Schema):
        system = StrictString(required=True, validate=one_of(MEDICATION_SYSTEMS),
                              metadata={"example": DMD})
        code = StrictString(required=True, validate=validate.Regexp(
            SNOMED_CODE, error="Not a dm+d / SNOMED CT concept id (6-18 digits)."),
            metadata={"example": "325278007"})
        display = fields.String(validate=validate.Length(max=500))

    class PreferencesSchema(Schema):
        opted_out = StrictBoolean(load_default=False)
        declined_topics = fields.List(StrictString(validate=SLUG),
                                      validate=validate.Length(max=MAX_DECLINED_TOPICS),
                                      load_default=list)

    class ContactEventSchema(Schema):
        """One contact between a member of staff and a person."""

        event_id = StrictString(required=True, validate=[validate.Length(max=200), IDENT],
                                metadata={"example": "emis-2026-11-22-000123"})
        source = StrictString(required=True, validate=[validate.Length(max=100), IDENT],
                              metadata={"example": "emis-web"})
        occurred_at = fields.AwareDateTime(
            required=True, format="iso", error_messages=AWARE_DATETIME_ERRORS,
            metadata={"description": "ISO 8601 with a zone offset.",
                      "example": "2026-11-22T09:30:00+00:00"})
        organisation = StrictString(required=True, validate=ODS, metadata={"example": "Y02345"})
        setting = StrictString(required=True, validate=one_of(_choices(catalogue, "setting")))
        contact_type = StrictString(validate=one_of(_choices(catalogue, "contact_type")))
        staff = fields.Nested(StaffSchema)
        person = fields.Nested(PersonSchema, required=True)
        facts = fields.Nested(facts_schema, load_default=dict)
        conditions = fields.List(fields.Nested(ConditionSchema),
                                 validate=_distinct_conditions, load_default=list)
        medications = fields.List(
            fields.Nested(MedicationSchema), validate=validate.Length(max=MAX_MEDICATIONS),
            metadata={"description": "Current medicines (dm+d or SNOMED CT codes), mapped to "
                      "medicine classes such as diabetes and hypertension."})
        fact_dates = fields.Dict(
            keys=fields.String(), values=fields.Raw(),
            metadata={"description": "When each fact was recorded. A fact older than its "
                      "maximum age at occurred_at is not used (ignored_facts on the event); a "
                      "fact without a date is taken as current.",
                      "example": {"hba1c_mmol_mol": "2026-03-03"}})
        preferences = fields.Nested(PreferencesSchema, load_default=lambda: {
            "opted_out": False, "declined_topics": []})
        callback_url = fields.Url(schemes={"https", "http"}, require_tld=False,
                                  validate=[validate.Length(max=2048), _check_no_credentials],
                                  metadata={"example": "https://gp-system.example/mecc/webhook"})

        @validates_schema
        def _sensible_times(self, data: dict[str, Any], **_: Any) -> None:
            occurred = data.get("occurred_at")
            if occurred is None:
                return
            if occurred > datetime.now(UTC) + FUTURE_TOLERANCE:
                raise ValidationError("Must not be more than 5 minutes in the future.",
                                      "occurred_at")
            try:
                on = occurred.astimezone(UTC).date()
            except OverflowError:  # e.g. 0001-01-01T00:00+01:00 has no UTC date
                raise ValidationError("Out of range once converted to UTC.",
                                      "occurred_at") from None
            person = data.get("person") or {}
            born = person.get("birth_date")
            if isinstance(born, date) and born > on:
                raise ValidationError(
                    {"person": {"birth_date": ["Must not be after occurred_at."]}})
            errors: dict[int, Any] = {}
            for index, item in enumerate(data.get("conditions") or []):
                onset = item.get("onset_date")
                if isinstance(onset, date) and onset > on:
                    errors[index] = {"onset_date": ["Must not be after occurred_at."]}
            if errors:
                raise ValidationError({"conditions": errors})
            self._check_fact_dates(data.get("fact_dates") or {}, occurred)

        def _check_fact_dates(self, fact_dates: dict[str, Any], occurred: datetime) -> None:
            errors: dict[str, list[str]] = {}
            for name, recorded in fact_dates.items():
                if name not in sent:
                    close = difflib.get_close_matches(str(name), list(sent), n=1)
                    hint = f" Did you mean '{close[0]}'?" if close else ""
                    errors[str(name)] = [f"Unknown fact.{hint}"]
                    continue
                try:
                    moment = parse_fact_date(recorded)
                except ValueError:
                    errors[name] = [FACT_DATE_ERROR]
                    continue
                if after_contact(moment, occurred):
                    errors[name] = ["Must not be after occurred_at."]
            if errors:
                raise ValidationError({"fact_dates": errors})

        @post_load
        def _normalise(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
            data["organisation"] = data["organisation"].upper()
            data["occurred_at"] = data["occurred_at"].astimezone(UTC)
            return data

    return ContactEventSchema
