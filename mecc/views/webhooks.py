"""Webhook deliveries: list them, and re-drive one."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import fields, validate

from mecc.delivery import webhook_admin
from mecc.delivery.webhooks import STATUSES
from mecc.platform.fields import Schema, one_of
from mecc.platform.runtime import current
from mecc.views import PROBLEM_RESPONSES
from mecc.views.auth import require_scope
from mecc.views.problems import document_problems
from mecc.views.responses import IsoDateTime

blp = Blueprint("webhook_deliveries", __name__, url_prefix="/api/v1/webhook-deliveries",
                description="Signed webhook deliveries of prompts to callback URLs (Standard "
                "Webhooks), retried with backoff for 24 h, then parked as failed.")


class WebhookDeliveryQuerySchema(Schema):
    organisation = fields.String(validate=validate.Length(max=16))
    status = fields.String(validate=one_of(STATUSES))
    event = fields.UUID(metadata={"description": "The event's id (the uuid we gave it)."})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(validate=validate.Length(max=200))


class WebhookDeliverySchema(Schema):
    id = fields.UUID(metadata={"description": "Also the `webhook-id` header of every attempt."})
    event = fields.UUID()
    url = fields.String()
    organisation = fields.String()
    status = fields.String(metadata={"enum": list(STATUSES)})
    attempts = fields.Integer()
    next_attempt_at = fields.String(allow_none=True, metadata={
        "format": "date-time", "description": "When the next attempt is due (while pending)."})
    last_attempt_at = IsoDateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = IsoDateTime()
    updated_at = IsoDateTime()


class WebhookDeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(WebhookDeliverySchema))
    next_cursor = fields.String(allow_none=True)
_REDRIVE_PROBLEMS = {
    **{status: PROBLEM_RESPONSES[status] for status in (401, 403, 404)},
    409: "The delivery is being sent or already succeeded.",
}


@blp.route("", methods=["GET"])
@require_scope("events:write")
@blp.arguments(WebhookDeliveryQuerySchema, location="query", as_kwargs=True)
@blp.response(200, WebhookDeliveryPageSchema)
@document_problems(blp, PROBLEM_RESPONSES, 401, 403, 404, 422)
def list_deliveries(**args: Any) -> Any:
    """Webhook deliveries of the key's organisation, newest first; paginate with `cursor`."""
    return webhook_admin.list_deliveries(current(), g.principal, args)


@blp.route("/<uuid:delivery_id>/retry", methods=["POST"])
@require_scope("events:write")
@blp.response(202, WebhookDeliverySchema, description="Due now; a worker sends it shortly. "
              "A disabled endpoint (410 Gone earlier) is enabled again.")
@document_problems(blp, _REDRIVE_PROBLEMS)
def retry_delivery(delivery_id: Any) -> Any:
    """Re-drive a pending, failed or disabled delivery now."""
    return webhook_admin.retry_delivery(current(), g.principal, str(delivery_id))
