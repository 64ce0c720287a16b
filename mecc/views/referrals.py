"""Closed-loop referrals: opened by a `referred` outcome naming a service, followed to their
close, with the person's own outcomes; also as FHIR R4 ServiceRequest + Task."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, g
from flask_smorest import Blueprint
from marshmallow import fields, validate

from mecc.platform.fields import Schema, StrictInteger, StrictString, one_of
from mecc.platform.runtime import current
from mecc.referrals import service as referrals
from mecc.referrals.fhir import STATEMENTS
from mecc.referrals.lifecycle import SETTABLE, STATUSES
from mecc.views.auth import require_scope
from mecc.views.reports import DateOrDateTime

blp = Blueprint("referrals", __name__, url_prefix="/api/v1/referrals",
                description="Referrals to local services, followed to their close, with the "
                            "person's own outcomes.")


class ReferralQuerySchema(Schema):
    status = fields.String(validate=one_of(STATUSES))
    service = fields.String(validate=validate.Length(max=100), metadata={
        "description": "A service id from the directory."})
    from_ = DateOrDateTime(data_key="from", metadata={
        "description": "Opened at or after (a date means 00:00 UTC)."})
    to = DateOrDateTime(metadata={"description": "Opened before."})
    prompt = fields.UUID(metadata={"description": "The prompt whose outcome opened it."})
    person_id = fields.String(validate=validate.Length(max=100))
    organisation = fields.String(validate=validate.Length(min=1, max=16))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(validate=validate.Length(max=200))


class ServiceRefSchema(Schema):
    id = fields.String()
    name = fields.String()
    service_type = fields.String()


class ReferralSchema(Schema):
    id = fields.UUID()
    prompt = fields.UUID()
    organisation = fields.String()
    person_id = fields.String()
    team = fields.String(allow_none=True)
    staff_id = fields.String(allow_none=True, metadata={"description": "Who referred."})
    topic = fields.String()
    rule = fields.Dict()
    service = fields.Nested(ServiceRefSchema)
    status = fields.String(metadata={"enum": list(STATUSES)})
    attendance = fields.String(allow_none=True, metadata={"enum": ["attended",
                                                                   "did_not_attend"]})
    next_statuses = fields.List(fields.String(), metadata={
        "description": "The statuses it may move to next."})
    opened_at = fields.String(metadata={"format": "date-time"})
    accepted_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    closed_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})
    links = fields.Dict()


class StatusChangeSchema(Schema):
    status = fields.String()
    note = fields.String(allow_none=True)
    recorded_at = fields.String(metadata={"format": "date-time"})
    recorded_by = fields.String()


class PersonalOutcomeRecordSchema(Schema):
    recorded_at = fields.String(metadata={"format": "date-time"})
    recorded_by = fields.String()
    scores = fields.Dict(keys=fields.String(), values=fields.Integer())


class ReferralDetailSchema(ReferralSchema):
    history = fields.List(fields.Nested(StatusChangeSchema))
    personal_outcomes = fields.List(fields.Nested(PersonalOutcomeRecordSchema))


class ReferralPageSchema(Schema):
    items = fields.List(fields.Nested(ReferralSchema))
    next_cursor = fields.String(allow_none=True)


class StatusBodySchema(Schema):
    status = StrictString(required=True, validate=one_of(SETTABLE))
    note = fields.String(validate=validate.Length(max=2000),
                         metadata={"description": "Free text; kept out of logs and reports."})


def _score(statement: str) -> StrictInteger:
    return StrictInteger(
        validate=validate.Range(min=1, max=5, error="Must be a whole number from 1 (strongly "
                                "disagree) to 5 (strongly agree)."),
        metadata={"description": f"'{statement}': 1 (strongly disagree) to 5 (strongly "
                                 "agree). Leave out an item the person did not answer."})


# One field per statement of the self-management briefing (an unknown item is an error).
ScoresSchema = Schema.from_dict({item: _score(text) for item, text in STATEMENTS.items()},
                                name="PersonalOutcomeScores")


class PersonalOutcomesBodySchema(Schema):
    recorded_at = fields.AwareDateTime(required=True, format="iso", metadata={
        "description": "When the person gave these answers."})
    scores = fields.Nested(ScoresSchema, required=True, validate=validate.Length(
        min=1, error="Give at least one score."), metadata={"minProperties": 1})


@blp.route("", methods=["GET"])
@require_scope("prompts:read")
@blp.arguments(ReferralQuerySchema, location="query", as_kwargs=True)
@blp.response(200, ReferralPageSchema)
def list_referrals(**args: Any) -> Any:
    """Referrals, newest first, filtered; paginate with `cursor`."""
    return referrals.list_referrals(current(), g.principal, args)


@blp.route("/<uuid:referral_id>", methods=["GET"])
@require_scope("prompts:read")
@blp.response(200, ReferralDetailSchema)
def get_referral(referral_id: Any) -> Any:
    """One referral with its status history and personal outcomes."""
    return referrals.get_referral(current(), g.principal, str(referral_id))


@blp.route("/<uuid:referral_id>/status", methods=["POST"])
@require_scope("prompts:write")
@blp.arguments(StatusBodySchema)
@blp.response(200, ReferralDetailSchema)
def post_status(body: dict[str, Any], referral_id: Any) -> Any:
    """Move the referral on (409 for a step its current status does not allow)."""
    return referrals.change_status(current(), g.principal, str(referral_id), body)


@blp.route("/<uuid:referral_id>/personal-outcomes", methods=["POST"])
@require_scope("prompts:write")
@blp.arguments(PersonalOutcomesBodySchema)
@blp.response(201, ReferralDetailSchema)
def post_personal_outcomes(body: dict[str, Any], referral_id: Any) -> Any:
    """Record the person's own view: each of the six statements scored 1 to 5."""
    return referrals.record_personal_outcomes(current(), g.principal, str(referral_id), body)


@blp.route("/<uuid:referral_id>/fhir", methods=["GET"])
@require_scope("prompts:read")
@blp.response(200, content_type="application/fhir+json",
              description="A FHIR R4 Bundle (collection): ServiceRequest, then Task.")
def get_referral_fhir(referral_id: Any) -> Any:
    """The referral as a FHIR R4 Bundle: a ServiceRequest and the Task that follows it."""
    bundle = referrals.referral_fhir(current(), g.principal, str(referral_id))
    return Response(json.dumps(bundle), mimetype="application/fhir+json")
