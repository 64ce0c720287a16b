"""Reports: what the prompts achieved."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import fields, validate

from mecc.clinical.domain import OUTCOMES
from mecc.platform.auth import require_scope
from mecc.platform.fields import Schema, one_of
from mecc.platform.runtime import current
from mecc.reports import outcomes as reports

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports",
                description="Outcome reports: conversations, referrals and declines.")

# "+01:00" in an unencoded query string arrives as " 01:00".
_SPACE_FOR_PLUS = re.compile(r" (\d{2}:?\d{2})$")


class DateOrDateTime(fields.Field):
    """A date (midnight UTC that day) or an ISO 8601 date-time with a zone offset."""

    default_error_messages = {
        "invalid": "Must be a date (YYYY-MM-DD) or an ISO 8601 date-time with a zone offset.",
        "naive": "A date-time needs a zone offset (e.g. 2026-11-22T09:30:00+00:00 or ...Z).",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not value.strip():
            raise self.make_error("invalid")
        text = value.strip()
        try:
            if len(text) == 10:
                return datetime.combine(date.fromisoformat(text), time(), UTC)
            moment = datetime.fromisoformat(_SPACE_FOR_PLUS.sub(r"+\1", text))
        except ValueError:
            raise self.make_error("invalid") from None
        if moment.tzinfo is None:
            raise self.make_error("naive")
        return moment.astimezone(UTC)


class OutcomeQuerySchema(Schema):
    from_ = DateOrDateTime(data_key="from", metadata={
        "description": "Start (inclusive) of the contacts' time. Default: 29 days before today "
                       "(00:00 UTC), or 30 days before `to`."})
    to = DateOrDateTime(metadata={
        "description": "End (exclusive). Default: tomorrow 00:00 UTC, so today is included."})
    group_by = fields.String(load_default="topic", validate=one_of(reports.GROUP_BY))
    organisation = fields.String(validate=validate.Length(min=1, max=16), metadata={
        "description": "One organisation (ODS code). A key bound to an organisation sees only "
                       "its own; asking for another answers 404."})


class ReportRatesSchema(Schema):
    outcome = fields.Float(allow_none=True, metadata={
        "description": "Pushed prompts with any outcome / pushed."})
    conversation = fields.Float(allow_none=True)
    referral = fields.Float(allow_none=True)
    decline = fields.Float(allow_none=True)


class ReportCountsSchema(Schema):
    created = fields.Integer(metadata={"description": "Prompts stored (shown or deferred)."})
    pushed = fields.Integer(metadata={"description": "Shown to staff (not deferred)."})
    deferred = fields.Integer(metadata={"description": "Over the per-contact cap; not pushed."})
    outcomes = fields.Dict(keys=fields.String(validate=validate.OneOf(OUTCOMES)),
                           values=fields.Integer(), metadata={
                               "description": "Prompts by their latest outcome."})
    with_outcome = fields.Integer()
    no_outcome = fields.Integer(metadata={"description": "Pushed, still without an outcome."})
    rates = fields.Nested(ReportRatesSchema)


class ReportGroupSchema(ReportCountsSchema):
    key = fields.String(metadata={"description": "The topic, rule key, setting, ODS code or "
                                                 "day (YYYY-MM-DD, UTC)."})


class OutcomeReportSchema(Schema):
    from_ = fields.String(data_key="from", attribute="from", metadata={"format": "date-time"})
    to = fields.String(metadata={"format": "date-time"})
    group_by = fields.String()
    organisation = fields.String(allow_none=True)
    items = fields.List(fields.Nested(ReportGroupSchema))
    totals = fields.Nested(ReportCountsSchema)
    next_cursor = fields.String(allow_none=True, metadata={
        "description": "Always null: a report is one page."})


@blp.route("/outcomes", methods=["GET"])
@require_scope("reports:read")
@blp.arguments(OutcomeQuerySchema, location="query", as_kwargs=True)
@blp.response(200, OutcomeReportSchema)
def outcomes(group_by: str, from_: datetime | None = None, to: datetime | None = None,
             organisation: str | None = None) -> Any:
    """Prompts created, pushed, each outcome, no outcome and rates, per group, by contact time."""
    return reports.outcomes_report(current(), g.principal, group_by=group_by, start=from_,
                                   end=to, organisation=organisation)
