"""The request bodies of rules and services, as OpenAPI schemas.

Rules and services are validated by their own parsers (mecc.clinical.rulepack,
mecc.clinical.directory), which also read the YAML files; these marshmallow schemas only
describe the same bounds, patterns and choices for the OpenAPI document. They are kept honest
by schemathesis (tests/integration/test_schemathesis.py): a body that fits the schema and is
refused, or one that breaks it and is accepted, fails that test. What a schema cannot say (a
`when` expression that compiles, a summary template that renders) is in the descriptions.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from mecc.clinical.catalogue import Catalogue
from mecc.clinical.directory import SERVICE_TYPES
from mecc.clinical.domain import INDICATORS, KINDS, RULE_STATUSES
from mecc.clinical.rulepack import MAX_DAYS
from mecc.platform.fields import Schema
from mecc.views.openapi import NOT_BLANK, PY_SPACE, RULE_KEY_PATTERN, SERVICE_ID_PATTERN

# What urlsplit() reads as an http(s) URL with a host (it drops tabs and line breaks).
WEB_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\t\n\r]"
ODS_ANY_CASE = r"^[A-Za-z0-9]{3,10}$"


def _text(max_length: int, *, required: bool = False, nullable: bool = False,
          **metadata: Any) -> fields.String:
    if required:
        return fields.String(required=True, validate=[validate.Length(min=1, max=max_length),
                                                      validate.Regexp(NOT_BLANK)],
                             metadata=metadata)
    return fields.String(allow_none=nullable, validate=validate.Length(max=max_length),
                         metadata=metadata)


def _choices(values: tuple[str, ...] | list[str], description: str) -> fields.List:
    return fields.List(fields.String(validate=validate.OneOf(values)), allow_none=True,
                       metadata={"uniqueItems": True, "description": description})


class PromptBodySchema(Schema):
    summary = _text(1000, required=True, description=(
        "One line for the staff screen; a template over facts ({{ bmi }}, filters), rendered "
        "at most 140 characters and never empty when facts are unknown."),
        example="BMI {{ bmi }}: offer a weight-management conversation.")
    detail = _text(20_000, nullable=True, description="Markdown; the same template language.",
                   example="**Ask, advise, act.** Offer the local service.")
    indicator = fields.String(validate=validate.OneOf(INDICATORS), metadata={
        "description": "How the screen marks it (default info)."})


class SourceBodySchema(Schema):
    label = _text(200, required=True, example="NICE NG209")
    url = fields.String(allow_none=True, validate=validate.Regexp(WEB_URL), metadata={
        "description": "An http(s) URL.", "example": "https://www.nice.org.uk/guidance/ng209"})


def rule_body_schema(catalogue: Catalogue, *, for_update: bool) -> type[ma.Schema]:
    """The rule body of POST /rules (key required) or PUT /rules/{key} (key from the URL)."""
    def values(fact: str) -> tuple[str, ...]:
        spec = catalogue.facts.get(fact)
        return spec.values if spec is not None and spec.values else ()

    def days(description: str) -> fields.Integer:
        return fields.Integer(allow_none=True, validate=validate.Range(min=0, max=MAX_DAYS),
                              metadata={"description": description})

    key = fields.String(required=not for_update, validate=validate.Regexp(RULE_KEY_PATTERN),
                        metadata={"example": "smoking-brief-advice", "description": (
                            "Lower-case letters, digits and hyphens; on PUT, the key in the "
                            "URL (a different one here is a 422).")})
    attrs: dict[str, Any] = {
        "key": key,
        "title": _text(200, required=True, example="Very brief advice on smoking"),
        "topic": fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,62}$"),
                               metadata={"example": "smoking"}),
        "kind": fields.String(required=True, validate=validate.OneOf(KINDS)),
        "priority": fields.Integer(required=True, validate=validate.Range(min=1, max=100),
                                   metadata={"description": "Higher shows first.",
                                             "example": 80}),
        "when": _text(4000, required=True, description=(
            "The condition, in the rule language (docs/rule-language.md); it must compile "
            "against the fact catalogue (POST /rules/validate checks one)."),
            example="smoking_status == 'current' && age >= 18"),
        "prompt": fields.Nested(PromptBodySchema, required=True),
        "cooldown_days": days("Days before the same person gets it again (default 180)."),
        "decline_days": days("Days it stays away after the person declines (default 180)."),
        "settings": _choices(values("setting"), "Care settings it applies in (none: all)."),
        "staff_roles": _choices(values("staff_role"), "Staff roles it shows to (none: all)."),
        "organisations": fields.List(
            fields.String(validate=validate.Regexp(ODS_ANY_CASE)), allow_none=True,
            metadata={"uniqueItems": True, "description": (
                "ODS codes it applies to (none: every organisation the author may act for).")}),
        "suggestions": _choices(SERVICE_TYPES, "Service types to suggest with it."),
        "sources": fields.List(fields.Nested(SourceBodySchema), allow_none=True),
        # What GET returns, so a GET -> edit -> PUT round trip is accepted as it is.
        "version": fields.Integer(allow_none=True, validate=validate.Range(min=1, max=1_000_000),
                                  metadata={"description": "Ignored: the server numbers "
                                                           "versions."}),
        "status": fields.String(validate=validate.OneOf(RULE_STATUSES),
                                metadata={"description": "Ignored: publish to change it."}),
        "updated_by": fields.String(allow_none=True, metadata={"description": "Ignored."}),
        "updated_at": fields.String(allow_none=True, metadata={"format": "date-time",
                                                               "description": "Ignored."}),
    }
    name = "RuleUpdate" if for_update else "RuleCreate"
    return Schema.from_dict(attrs, name=name)


class ContactBodySchema(Schema):
    phone = fields.String(validate=validate.Regexp(NOT_BLANK), metadata={
        "example": "0800 123 4567"})
    # The directory's check is Python's `[^@\s]+@[^@\s]+\.[^@\s]+` (its own \s).
    email = fields.String(validate=validate.Regexp(
        rf"^[^@{PY_SPACE}]+@[^@{PY_SPACE}]+\.[^@{PY_SPACE}]+$"),
        metadata={"example": "referrals@example.nhs.uk"})
    url = fields.String(validate=validate.Regexp(WEB_URL),
                        metadata={"example": "https://www.example.nhs.uk/stop-smoking"})


class ServiceBodySchema(Schema):
    id = fields.String(required=True, validate=validate.Regexp(SERVICE_ID_PATTERN),
                       metadata={"example": "stop-smoking-manchester"})
    name = _text(200, required=True, example="Stop Smoking Manchester")
    service_type = fields.String(required=True, validate=validate.OneOf(SERVICE_TYPES))
    areas = fields.List(fields.String(validate=validate.Regexp(
        r"^[A-Za-z]{1,2}[0-9][A-Za-z0-9]?$")), allow_none=True, metadata={
        "description": "Postcode districts it serves (none: national).", "example": ["M14"]})
    organisations = fields.List(fields.String(validate=validate.Regexp(
        r"^[A-Za-z0-9]{3,12}$")), allow_none=True, metadata={
        "description": "ODS codes it is limited to (none: any)."})
    self_referral = fields.Boolean(metadata={"description": "People may refer themselves."})
    contact = fields.Nested(ContactBodySchema, allow_none=True)
    referral_url = fields.String(allow_none=True, validate=validate.Regexp(WEB_URL))
    description = fields.String(metadata={"example": "Free support to stop smoking."})


class ServiceUpdateSchema(ServiceBodySchema):
    id = fields.String(validate=validate.Regexp(SERVICE_ID_PATTERN), metadata={
        "description": "Optional: the id in the URL (a different one here is a 422)."})


def register_body_schemas(spec: Any, catalogue: Catalogue) -> None:
    """The rule bodies depend on the fact catalogue (settings, staff roles): registered as
    components once the catalogue is loaded; the views refer to them by name."""
    spec.components.schema("RuleCreate", schema=rule_body_schema(catalogue, for_update=False))
    spec.components.schema("RuleUpdate", schema=rule_body_schema(catalogue, for_update=True))


def json_body(schema: Any, example: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAPI requestBody for this schema (a class, or a component's name), with an
    example."""
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {"application/json": media}}
