"""Reports: what the prompts achieved, for whom, at what cost to staff, and what referrals led
to. Every report also answers CSV for `Accept: text/csv`."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any

from flask import Response, g, request
from flask_smorest import Blueprint
from marshmallow import fields, validate

from mecc.clinical.domain import OUTCOMES
from mecc.platform.fields import Schema, one_of
from mecc.platform.runtime import current
from mecc.reports import export, fatigue, staff_load
from mecc.reports import outcomes as reports
from mecc.reports import referrals as referral_reports
from mecc.views.auth import require_scope

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports",
                description="Reports: outcomes and equity, alert fatigue, staff load and "
                            "referrals. Each answers CSV for `Accept: text/csv`, with the "
                            "same small-number suppression (`<5` in a hidden cell).")

# "+01:00" in an unencoded query string arrives as " 01:00".
_SPACE_FOR_PLUS = re.compile(r" (\d{2}:?\d{2})$")
_CSV_NOTE = (" Answers `text/csv` instead for `Accept: text/csv` (a row per group, then a row "
             "for all; a hidden count reads `<5`).")


class DateOrDateTime(fields.Field):
    """A date (midnight UTC that day) or an ISO 8601 date-time with a zone offset."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}],
                    "example": "2026-11-01", **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

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


class WindowQuerySchema(Schema):
    from_ = DateOrDateTime(data_key="from", metadata={
        "description": "Start (inclusive) of the contacts' time. Default: 29 days before today "
                       "(00:00 UTC), or 30 days before `to`."})
    to = DateOrDateTime(metadata={
        "description": "End (exclusive). Default: tomorrow 00:00 UTC, so today is included."})
    organisation = fields.String(validate=validate.Length(min=1, max=16), metadata={
        "description": "One organisation (ODS code). A key bound to an organisation sees only "
                       "its own; asking for another answers 404."})


class OutcomeQuerySchema(WindowQuerySchema):
    group_by = fields.String(load_default="topic", validate=one_of(reports.GROUP_BY), metadata={
        "description": "ethnicity_group, age_band, sex, postcode_district and "
                       "deprivation_decile are the person as recorded at the contact; in "
                       "those, small numbers are suppressed."})


class ReferralReportQuerySchema(WindowQuerySchema):
    group_by = fields.String(load_default="service",
                             validate=one_of(referral_reports.GROUP_BY))


def _count(description: str = "") -> fields.Integer:
    return fields.Integer(allow_none=True, metadata={
        "description": (description + " " if description else "")
        + "Null when hidden by small-number suppression."})


class ReportRatesSchema(Schema):
    outcome = fields.Float(allow_none=True, metadata={
        "description": "Pushed prompts with any outcome / pushed."})
    conversation = fields.Float(allow_none=True)
    referral = fields.Float(allow_none=True)
    decline = fields.Float(allow_none=True)


class ReportCountsSchema(Schema):
    created = _count("Prompts stored (shown or deferred).")
    pushed = _count("Shown to staff (not deferred).")
    deferred = _count("Over the per-contact cap; not pushed.")
    outcomes = fields.Dict(keys=fields.String(validate=validate.OneOf(OUTCOMES)),
                           values=fields.Integer(allow_none=True), metadata={
                               "description": "Prompts by their latest outcome."})
    with_outcome = _count()
    no_outcome = _count("Pushed, still without an outcome.")
    rates = fields.Nested(ReportRatesSchema)
    suppressed = fields.Boolean(metadata={
        "description": "True when a count of this group is hidden (1 to 4, or one that would "
                       "give a hidden count away)."})


class ReportGroupSchema(ReportCountsSchema):
    key = fields.String(allow_none=True, metadata={
        "description": "The topic, rule key, setting, ODS code, day (YYYY-MM-DD, UTC), team, "
                       "staff id, or person attribute ('unknown' when not recorded); null "
                       "for a team or staff id not recorded."})


class SuppressionSchema(Schema):
    applied = fields.Boolean()
    min_cell = fields.Integer(allow_none=True, metadata={
        "description": "Counts from 1 to min_cell - 1 are hidden (MECC_REPORT_MIN_CELL)."})
    suppressed_groups = fields.Integer()


class WindowedSchema(Schema):
    from_ = fields.String(data_key="from", attribute="from", metadata={"format": "date-time"})
    to = fields.String(metadata={"format": "date-time"})
    organisation = fields.String(allow_none=True)
    next_cursor = fields.String(allow_none=True, metadata={
        "description": "Always null: a report is one page."})


class OutcomeReportSchema(WindowedSchema):
    group_by = fields.String()
    suppression = fields.Nested(SuppressionSchema)
    items = fields.List(fields.Nested(ReportGroupSchema))
    totals = fields.Nested(ReportCountsSchema)


class FatigueRowSchema(Schema):
    rule = fields.String()
    title = fields.String()
    topic = fields.String()
    pushed = fields.Integer()
    with_outcome = fields.Integer()
    declined = fields.Integer()
    not_appropriate = fields.Integer()
    not_now = fields.Integer()
    no_outcome = fields.Integer()
    override_rate = fields.Float(allow_none=True, metadata={
        "description": "(declined + not_appropriate + not_now) / with_outcome."})
    flagged = fields.Boolean(metadata={
        "description": "override_rate >= MECC_FATIGUE_OVERRIDE_RATE with at least "
                       "MECC_FATIGUE_MIN_PROMPTS pushed prompts."})


class FatigueThresholdsSchema(Schema):
    override_rate = fields.Float()
    min_prompts = fields.Integer()


class FatigueReportSchema(WindowedSchema):
    thresholds = fields.Nested(FatigueThresholdsSchema)
    flagged = fields.Integer()
    items = fields.List(fields.Nested(FatigueRowSchema))


class LoadSchema(Schema):
    median = fields.Float(allow_none=True)
    p90 = fields.Float(allow_none=True)
    max = fields.Integer(allow_none=True)


class TeamLoadSchema(LoadSchema):
    team = fields.String(allow_none=True)
    staff = fields.Integer()
    staff_days = fields.Integer()
    pushed = fields.Integer()


class StaffLoadSchema(WindowedSchema):
    staff = fields.Integer(metadata={"description": "Members of staff with a pushed prompt."})
    staff_days = fields.Integer()
    pushed = fields.Integer()
    without_staff = fields.Integer(metadata={
        "description": "Pushed prompts of contacts without a staff id (not in the figures)."})
    per_staff_day = fields.Nested(LoadSchema)
    teams = fields.List(fields.Nested(TeamLoadSchema))


class ReferralGroupSchema(Schema):
    key = fields.String(allow_none=True)
    label = fields.String(allow_none=True)
    referrals = _count()
    status = fields.Dict(keys=fields.String(), values=fields.Integer(allow_none=True))
    accepted = _count("Taken on by the service (accepted, or offered an appointment).")
    attended = _count()
    did_not_attend = _count()
    rates = fields.Dict(keys=fields.String(), values=fields.Float(allow_none=True), metadata={
        "description": "acceptance (accepted / referrals), attendance (attended / (attended "
                       "+ did_not_attend))."})
    personal_outcomes = fields.Dict(keys=fields.String(), values=fields.Dict(), metadata={
        "description": "Per statement: responses, mean (1-5) and distribution {'1'..'5'}, "
                       "from each referral's latest record."})
    suppressed = fields.Boolean()


class ReferralReportSchema(WindowedSchema):
    group_by = fields.String()
    suppression = fields.Nested(SuppressionSchema)
    items = fields.List(fields.Nested(ReferralGroupSchema))
    totals = fields.Nested(ReferralGroupSchema)


def _answer(report: dict[str, Any], kind: str, to_csv: Callable[[dict[str, Any]], str]) -> Any:
    """The report as JSON, or as CSV when the client asks for it."""
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    if best != "text/csv":
        return report
    response = Response(to_csv(report), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{export.filename(kind, report)}"')
    response.headers["Vary"] = "Accept"
    return response


@blp.route("/outcomes", methods=["GET"])
@require_scope("reports:read")
@blp.arguments(OutcomeQuerySchema, location="query", as_kwargs=True)
@blp.response(200, OutcomeReportSchema, description="The report." + _CSV_NOTE)
def outcomes(group_by: str, from_: datetime | None = None, to: datetime | None = None,
             organisation: str | None = None) -> Any:
    """Prompts created, pushed, each outcome, no outcome and rates, per group, by contact time."""
    report = reports.outcomes_report(current(), g.principal, group_by=group_by, start=from_,
                                     end=to, organisation=organisation)
    return _answer(report, "outcomes", export.outcomes_csv)


@blp.route("/rule-fatigue", methods=["GET"])
@require_scope("reports:read")
@blp.arguments(WindowQuerySchema, location="query", as_kwargs=True)
@blp.response(200, FatigueReportSchema, description="The report." + _CSV_NOTE)
def rule_fatigue(from_: datetime | None = None, to: datetime | None = None,
                 organisation: str | None = None) -> Any:
    """Per rule: pushed, overridden and ignored prompts, override rate, and the fatigue flag."""
    report = fatigue.fatigue_report(current(), g.principal, start=from_, end=to,
                                    organisation=organisation)
    return _answer(report, "rule-fatigue", export.fatigue_csv)


@blp.route("/staff-load", methods=["GET"])
@require_scope("reports:read")
@blp.arguments(WindowQuerySchema, location="query", as_kwargs=True)
@blp.response(200, StaffLoadSchema, description="The report." + _CSV_NOTE)
def staff_load_view(from_: datetime | None = None, to: datetime | None = None,
                    organisation: str | None = None) -> Any:
    """Prompts pushed per member of staff per day: median, p90 and max, overall and per team."""
    report = staff_load.staff_load_report(current(), g.principal, start=from_, end=to,
                                          organisation=organisation)
    return _answer(report, "staff-load", export.staff_load_csv)


@blp.route("/referrals", methods=["GET"])
@require_scope("reports:read")
@blp.arguments(ReferralReportQuerySchema, location="query", as_kwargs=True)
@blp.response(200, ReferralReportSchema, description="The report." + _CSV_NOTE)
def referrals(group_by: str, from_: datetime | None = None, to: datetime | None = None,
              organisation: str | None = None) -> Any:
    """Referrals opened in the window: status, attendance, and the personal outcome scores."""
    report = referral_reports.referrals_report(current(), g.principal, group_by=group_by,
                                               start=from_, end=to, organisation=organisation)
    return _answer(report, "referrals", export.referrals_csv)
