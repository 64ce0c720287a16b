"""Prompts for staff screens, and their outcomes."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import fields, validate

from mecc.clinical.domain import OUTCOMES
from mecc.platform.fields import IDENT, Schema, StrictString, one_of
from mecc.platform.runtime import current
from mecc.prompts import service as prompt_service
from mecc.views.auth import require_scope
from mecc.views.responses import PromptSchema
from mecc.views.stream import key_or_stream_token

blp = Blueprint("prompts", __name__, url_prefix="/api/v1/prompts",
                description="Prompts for staff screens, and what staff recorded.")


class PromptQuerySchema(Schema):
    organisation = fields.String(validate=validate.Length(max=16))
    team = fields.String(validate=validate.Length(max=100))
    staff_id = fields.String(validate=validate.Length(max=100))
    person_id = fields.String(validate=validate.Length(max=100))
    event = fields.UUID()
    topic = fields.String(validate=validate.Length(max=63))
    status = fields.String(validate=one_of(("new", "deferred", *OUTCOMES)))
    since = fields.AwareDateTime(format="iso")
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(validate=validate.Length(max=200))


class PromptPageSchema(Schema):
    items = fields.List(fields.Nested(PromptSchema))
    next_cursor = fields.String(allow_none=True)


class OutcomeSchema(Schema):
    outcome = StrictString(required=True, validate=one_of(OUTCOMES))
    staff_id = StrictString(validate=[validate.Length(max=100), IDENT])
    service_id = StrictString(validate=validate.Length(max=100))
    note = fields.String(validate=validate.Length(max=2000),
                         metadata={"description": "Free text; kept out of logs."})


class OutcomeRecordSchema(Schema):
    outcome = fields.String()
    staff_id = fields.String(allow_none=True)
    service_id = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    recorded_at = fields.String(metadata={"format": "date-time"})


class PromptWithHistorySchema(PromptSchema):
    outcomes = fields.List(fields.Nested(OutcomeRecordSchema))


@blp.route("", methods=["GET"])
@require_scope("prompts:read")
@blp.arguments(PromptQuerySchema, location="query", as_kwargs=True)
@blp.response(200, PromptPageSchema)
def list_prompts(**args: Any) -> Any:
    """Prompts, newest first, filtered; paginate with `cursor`."""
    return prompt_service.list_prompts(current(), g.principal, args)


@blp.route("/<uuid:prompt_id>", methods=["GET"])
@require_scope("prompts:read")
@blp.response(200, PromptWithHistorySchema)
def get_prompt(prompt_id: Any) -> Any:
    """One prompt with its outcome history."""
    return prompt_service.get_prompt(current(), g.principal, str(prompt_id))


@blp.route("/<uuid:prompt_id>/outcome", methods=["POST"])
@key_or_stream_token("prompts:write", in_query=False, prompt_arg="prompt_id")
@blp.arguments(OutcomeSchema)
@blp.response(201, PromptWithHistorySchema)
def post_outcome(body: dict[str, Any], prompt_id: Any) -> Any:
    """Record what happened; the latest outcome is the prompt's status."""
    return prompt_service.record_outcome(current(), g.principal, str(prompt_id), body)
