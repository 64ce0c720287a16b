"""Contact events: POST one, POST a batch, GET one."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint

from mecc.intake import read as event_service
from mecc.intake import service as intake
from mecc.platform.errors import ValidationFailed
from mecc.platform.runtime import current
from mecc.views import PROBLEM_RESPONSES, json_body
from mecc.views.auth import require_scope
from mecc.views.problems import document_problems
from mecc.views.responses import (
    BatchRequestSchema,
    BatchResponseSchema,
    EventAcceptedSchema,
    EventDetailSchema,
)

_PROBLEMS = {
    **PROBLEM_RESPONSES,
    409: "Same source and event_id with a different body.",
    413: "Body over the size limit.",
    415: "The body is not JSON (send Content-Type: application/json).",
}


def build_blueprint(event_schema: type[Any]) -> Blueprint:
    blp = Blueprint("events", __name__, url_prefix="/api/v1/events",
                    description="Contact events sent by clinical and care systems.")
    request_body = {"required": True,
                    "content": {"application/json": {"schema": event_schema}}}

    @blp.route("", methods=["POST"])
    @require_scope("events:write")
    @blp.doc(requestBody=request_body)
    @blp.response(202, EventAcceptedSchema, description="Accepted and queued for evaluation.")
    @blp.alt_response(200, schema=EventAcceptedSchema,
                      description="The same event again: the original result.")
    @document_problems(blp, _PROBLEMS, 400, 401, 403, 409, 413, 415, 422, 503)
    def post_event() -> Any:
        """Send one contact event."""
        accepted = intake.accept_event(current(), g.principal, json_body())
        return accepted.to_dict(), 202 if accepted.created else 200

    @blp.route("/batch", methods=["POST"])
    @require_scope("events:write")
    @blp.doc(requestBody={"required": True, "content": {
        "application/json": {"schema": BatchRequestSchema}}})
    @blp.response(200, BatchResponseSchema)
    @document_problems(blp, _PROBLEMS, 400, 401, 403, 413, 415, 422, 503)
    def post_batch() -> Any:
        """Send up to 500 contact events; each item is answered on its own."""
        body = json_body(check_values=False)  # each event is checked on its own
        items = body.get("events") if isinstance(body, dict) else None
        if not isinstance(body, dict) or set(body) - {"events"}:
            raise ValidationFailed("The body is {\"events\": [...]}.",
                                   errors={"body": ["Must be an object with only 'events'."]})
        if not isinstance(items, list) or not items:
            raise ValidationFailed("events must be a non-empty list.",
                                   errors={"events": ["Must be a list of 1 to 500 events."]})
        if len(items) > intake.BATCH_LIMIT:
            raise ValidationFailed(f"At most {intake.BATCH_LIMIT} events per batch.",
                                   errors={"events": [f"Longer than {intake.BATCH_LIMIT}."]})
        results = intake.accept_batch(current(), g.principal, items)
        return {"results": [event_service.batch_item_dict(r) for r in results]}

    @blp.route("/<uuid:event_uuid>", methods=["GET"])
    @require_scope("prompts:read", "events:write")
    @blp.response(200, EventDetailSchema)
    @document_problems(blp, _PROBLEMS, 401, 403, 404, 503)
    def get_event(event_uuid: Any) -> Any:
        """An event, its status, its prompts and its suppressed matches."""
        return event_service.event_detail(current(), g.principal, str(event_uuid))

    return blp
