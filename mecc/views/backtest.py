"""Back-tests: a rule version against the stored events of the last N days, run by a worker."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import fields, validate

from mecc.admin import backtest
from mecc.platform.fields import Schema, StrictInteger
from mecc.platform.runtime import current
from mecc.views.auth import require_scope

blp = Blueprint("backtests", __name__, url_prefix="/api/v1",
                description="How many prompts a day would a rule version create? Run over "
                            "stored events by a worker; polled by id.")


class BacktestRequestSchema(Schema):
    version = StrictInteger(validate=validate.Range(min=1), metadata={
        "description": "The rule version; default: the live one, else the latest."})
    days = StrictInteger(load_default=30, validate=validate.Range(min=1, max=backtest.MAX_DAYS),
                         metadata={"description": "Look back this many days (by occurred_at)."})
    organisation = fields.String(validate=validate.Length(min=1, max=16), metadata={
        "description": "Only this organisation's events (a key bound to an organisation "
                       "always scans only its own)."})


class BacktestRuleSchema(Schema):
    key = fields.String()
    version = fields.Integer()


class BacktestLinksSchema(Schema):
    self = fields.String(metadata={"example": "/api/v1/backtests/3f0c..."})


class BacktestSchema(Schema):
    id = fields.String(metadata={"format": "uuid"})
    rule = fields.Nested(BacktestRuleSchema)
    days = fields.Integer()
    organisation = fields.String(metadata={"description": "ODS code, or * for all."})
    status = fields.String(metadata={"enum": ["queued", "running", "done", "failed"]})
    error = fields.String(allow_none=True)
    requested_by = fields.String(metadata={"description": "The requesting API key's id."})
    created_at = fields.String(metadata={"format": "date-time"})
    started_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    finished_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    result = fields.Dict(allow_none=True, metadata={
        "description": "When done: window, complete (false when the time budget ran out), "
                       "suppression_applied, totals {events_scanned, matches, would_show, "
                       "suppressed by reason, errors, matches_per_day, would_show_per_day, "
                       "per_clinician_day {median, p90, max, staff_days}: the prompts a day "
                       "this rule would add per member of staff with a contact that day}, "
                       "per_day, per_setting, per_organisation (each: events, matches, "
                       "would_show), and a sample of up to 20 matched events (no person data)."})
    links = fields.Nested(BacktestLinksSchema)


@blp.route("/rules/<rule_key:key>/backtest", methods=["POST"])
@require_scope("rules:read", "rules:write")
@blp.arguments(BacktestRequestSchema, required=False)  # no body: the defaults
@blp.response(202, BacktestSchema)
def start_backtest(body: dict[str, Any], key: str) -> Any:
    """Back-test a rule version (alone, with person-centred suppression) over stored events."""
    started = backtest.request_backtest(current(), g.principal, key, version=body.get("version"),
                                        days=body["days"], organisation=body.get("organisation"))
    return started, 202, {"Location": started["links"]["self"]}


@blp.route("/backtests/<uuid:backtest_id>", methods=["GET"])
@require_scope("rules:read", "rules:write")
@blp.response(200, BacktestSchema)
def get_backtest(backtest_id: Any) -> Any:
    """A back-test's status (queued, running, done, failed) and, when done, its result."""
    return backtest.get_backtest(current(), g.principal, str(backtest_id))
