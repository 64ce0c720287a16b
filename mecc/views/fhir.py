"""FHIR R4 intake: POST /api/v1/fhir with a Bundle, mapped to one contact event."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import fields, validate

from mecc.intake import service as intake
from mecc.interop import fhir
from mecc.platform.errors import ValidationFailed, describe
from mecc.platform.fields import IDENT, Schema
from mecc.platform.runtime import current
from mecc.views import json_body
from mecc.views.auth import require_scope
from mecc.views.problems import document_problems
from mecc.views.responses import EventAcceptedSchema

blp = Blueprint("fhir", __name__, url_prefix="/api/v1/fhir",
                description="FHIR R4 intake: a Bundle with a Patient, an Encounter, Conditions "
                            "and Observations becomes one contact event.")

_PROBLEMS = {
    400: "Malformed request",
    401: "Missing or invalid API key",
    403: "The key lacks events:write or may not send for this organisation",
    409: "Same source and event_id (the Encounter's identifier) with a different content",
    413: "Body over the size limit",
    415: "The body is not JSON (send application/fhir+json or application/json)",
    422: "Structurally invalid FHIR, or the mapped event fails validation; `errors` names the "
         "FHIR element (Bundle.entry[2].resource.valueQuantity.value) and the event field",
    503: "Database unavailable; retry after `Retry-After` seconds",
}


class FhirQuerySchema(Schema):
    source = fields.String(validate=[validate.Length(min=1, max=100), IDENT],
                           metadata={"description": "The event's source (default: the API "
                                     "key's name).", "example": "emis-web"})


class FhirAcceptedSchema(EventAcceptedSchema):
    mapped = fields.List(fields.Dict(), metadata={
        "description": "Each event field, fact and condition with the resource it came from.",
        "example": [{"fact": "bmi", "value": 31.2, "from": "Observation/bmi-1",
                     "element": "valueQuantity.value"}]})
    ignored = fields.List(fields.Dict(), metadata={
        "description": "Each resource or coding not used, with why.",
        "example": [{"from": "Observation/bp-1", "element": "component[1].dataAbsentReason",
                     "reason": "dataAbsentReason: unknown."}]})


_BUNDLE = {"type": "object", "description": "A FHIR R4 Bundle of type collection or "
           "transaction.", "required": ["resourceType", "type", "entry"],
           "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]},
                          "type": {"type": "string", "enum": list(fhir.BUNDLE_TYPES)},
                          "entry": {"type": "array", "items": {"type": "object"}}}}


@blp.route("", methods=["POST"])
@require_scope("events:write")
@blp.arguments(FhirQuerySchema, location="query", as_kwargs=True)
@blp.doc(requestBody={"required": True, "content": {
    "application/fhir+json": {"schema": _BUNDLE}, "application/json": {"schema": _BUNDLE}}})
@blp.response(202, FhirAcceptedSchema, description="Mapped, accepted and queued.")
@blp.alt_response(200, schema=FhirAcceptedSchema,
                  description="The same event again: the original result.")
@document_problems(blp, _PROBLEMS)
def post_bundle(source: str | None = None) -> Any:
    """Send a FHIR Bundle; it is mapped to a contact event (see docs/interoperability.md)."""
    runtime = current()
    principal = g.principal
    defaults = fhir.Defaults(
        source=source or fhir.slug_source(principal.name),
        organisation=None if principal.is_all_organisations else principal.organisation)
    body = json_body()
    try:
        result = fhir.map_bundle(body, catalogue=runtime.catalogue, defaults=defaults,
                                 terms=fhir.code_tables(runtime.settings.config_dir))
    except ValidationFailed as exc:
        intake.count_rejection(exc)
        raise
    try:
        accepted = intake.accept_event(runtime, principal, result.event)
    except ValidationFailed as exc:
        errors = fhir.explain_errors(exc.errors, result.provenance)
        raise ValidationFailed(describe(errors), errors=errors) from None
    answer = {**accepted.to_dict(), "mapped": result.mapped, "ignored": result.ignored}
    return answer, 202 if accepted.created else 200
