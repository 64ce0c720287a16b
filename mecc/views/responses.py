"""Response shapes (documented in OpenAPI; the views build plain dicts in these shapes)."""

from __future__ import annotations

from marshmallow import fields, validate

from mecc.platform.fields import Schema
from mecc.views.problems import ProblemSchema


def IsoDateTime(**kwargs: object) -> fields.String:  # noqa: N802 - reads like a field class
    """A date-time the service layer has already rendered as ISO 8601 UTC."""
    return fields.String(metadata={"format": "date-time"}, **kwargs)  # type: ignore[arg-type]


class LinksSchema(Schema):
    self = fields.String(metadata={"example": "/api/v1/events/3f0c..."})
    prompts = fields.String(metadata={"example": "/api/v1/prompts?event=3f0c..."})


class EventAcceptedSchema(Schema):
    id = fields.UUID()
    event_id = fields.String()
    source = fields.String()
    status = fields.String(metadata={"enum": ["queued", "processing", "evaluated", "failed"]})
    links = fields.Nested(LinksSchema)


class BatchRequestSchema(Schema):
    events = fields.List(fields.Raw(), required=True, validate=validate.Length(min=1, max=500),
                         metadata={"description": "Up to 500 contact events (each in the "
                                   "ContactEvent shape), answered one by one: an item that is "
                                   "not a valid event is rejected in its own result."})


class BatchResultSchema(Schema):
    index = fields.Integer()
    status = fields.String(metadata={"enum": ["accepted", "duplicate", "rejected"]})
    id = fields.UUID(allow_none=True)
    problem = fields.Nested(ProblemSchema)


class BatchResponseSchema(Schema):
    results = fields.List(fields.Nested(BatchResultSchema))


class RuleRefSchema(Schema):
    key = fields.String()
    version = fields.Integer()


class SuggestionSchema(Schema):
    label = fields.String()
    service_id = fields.String(allow_none=True)
    service_type = fields.String()
    name = fields.String()
    contact = fields.Dict()
    referral_url = fields.String(allow_none=True)
    self_referral = fields.Boolean()
    national = fields.Boolean(metadata={
        "description": "A national service (the directory lists no areas for it)."})


class SourceLinkSchema(Schema):
    label = fields.String()
    url = fields.String(allow_none=True)


class EvidenceSchema(Schema):
    fact = fields.String()
    value = fields.Raw(metadata={"description": "The value the rule read."})
    recorded_at = fields.String(allow_none=True, metadata={
        "description": "When the value was recorded (a date or a date-time, as sent); null "
                       "when sent without a date or derived from the contact itself."})


class IgnoredFactSchema(Schema):
    fact = fields.String()
    recorded_at = fields.String()
    reason = fields.String(metadata={"example": "older than 365 days at the contact (400 days)"})


class PromptPersonSchema(Schema):
    id = fields.String(metadata={"example": "p-7f3a1c"})
    display = fields.String(allow_none=True, metadata={
        "description": "The label the sending system gave for staff screens (person.display); "
                       "null when none was sent or once it has been erased "
                       "(MECC_DISPLAY_RETENTION_HOURS after the contact).",
        "example": "Ann Example, 54 F, MRN 1234"})
    age = fields.Integer(allow_none=True, metadata={"description": "Whole years at the contact."})
    sex = fields.String(allow_none=True)


class PromptContactSchema(Schema):
    occurred_at = IsoDateTime()
    setting = fields.String()
    contact_type = fields.String(allow_none=True)


class LastOutcomeSchema(Schema):
    outcome = fields.String()
    service_id = fields.String(allow_none=True)
    staff_id = fields.String(allow_none=True)
    recorded_by = fields.String(allow_none=True, metadata={
        "description": "The member of staff named with the outcome, else the person or key "
                       "that recorded it."})
    recorded_at = IsoDateTime()


class PromptSchema(Schema):
    id = fields.UUID()
    event = fields.UUID()
    source = fields.String()
    person_id = fields.String()
    person = fields.Nested(PromptPersonSchema, metadata={
        "description": "Whose prompt it is: what staff need to be sure of before acting."})
    contact = fields.Nested(PromptContactSchema, metadata={
        "description": "The contact the prompt was made at."})
    organisation = fields.String()
    team = fields.String(allow_none=True)
    staff_id = fields.String(allow_none=True)
    rule = fields.Nested(RuleRefSchema)
    topic = fields.String()
    kind = fields.String(metadata={"enum": ["lifestyle_conversation",
                                            "self_management_referral", "social_prescribing"]})
    priority = fields.Integer()
    indicator = fields.String(metadata={"enum": ["info", "warning", "critical"]})
    summary = fields.String()
    detail = fields.String(metadata={"description": "Markdown."})
    suggestions = fields.List(fields.Nested(SuggestionSchema))
    sources = fields.List(fields.Nested(SourceLinkSchema))
    evidence = fields.List(fields.Nested(EvidenceSchema), metadata={
        "description": "The facts the rule read, with their dates where known."})
    status = fields.String(metadata={"enum": ["new", "deferred", "conversation_had", "referred",
                                              "declined", "not_now", "not_appropriate"]})
    last_outcome = fields.Nested(LastOutcomeSchema, allow_none=True, metadata={
        "description": "The latest outcome recorded (the status), or null."})
    created_at = IsoDateTime()
    updated_at = IsoDateTime()


class SuppressedSchema(Schema):
    rule = fields.Nested(RuleRefSchema)
    reason = fields.String()
    code = fields.String()


class EventDetailSchema(Schema):
    id = fields.UUID()
    event_id = fields.String()
    source = fields.String()
    occurred_at = IsoDateTime()
    received_at = IsoDateTime()
    organisation = fields.String()
    setting = fields.String()
    contact_type = fields.String(allow_none=True)
    staff = fields.Dict()
    person = fields.Dict(metadata={"description": "The person as sent, without the NHS number."})
    facts = fields.Dict()
    conditions = fields.List(fields.Dict())
    medications = fields.List(fields.Dict())
    fact_dates = fields.Dict(metadata={"description": "When each fact was recorded, as sent."})
    ignored_facts = fields.List(fields.Nested(IgnoredFactSchema), metadata={
        "description": "Facts not used in evaluation because of their date (too old at the "
                       "contact, or recorded after it)."})
    preferences = fields.Dict()
    status = fields.String(metadata={"enum": ["queued", "processing", "evaluated", "failed"]})
    status_reason = fields.String(allow_none=True)
    evaluated_at = IsoDateTime(allow_none=True)
    prompts = fields.List(fields.Nested(PromptSchema))
    suppressed = fields.List(fields.Nested(SuppressedSchema))
    links = fields.Nested(LinksSchema)
