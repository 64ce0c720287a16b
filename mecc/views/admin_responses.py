"""Response shapes of the rule and service endpoints (OpenAPI only: the views build the dicts).

Documented with `blp.alt_response(..., success=True)`, which describes an answer without
re-serialising it, so what the service layer returns is exactly what goes out; schemathesis
checks every answer against these.
"""

from __future__ import annotations

from marshmallow import fields

from mecc.admin.audit import ENTITIES
from mecc.clinical.directory import SERVICE_TYPES
from mecc.clinical.domain import INDICATORS, KINDS, RULE_STATUSES
from mecc.platform.fields import Schema
from mecc.views.responses import IsoDateTime


def _enum(values: tuple[str, ...] | list[str], description: str | None = None,
          allow_none: bool = False) -> fields.String:
    metadata: dict[str, object] = {"enum": list(values)}
    if description:
        metadata["description"] = description
    return fields.String(metadata=metadata, allow_none=allow_none)


class RulePromptSchema(Schema):
    summary = fields.String()
    detail = fields.String()
    indicator = _enum(INDICATORS)


class RuleSourceSchema(Schema):
    label = fields.String()
    url = fields.String()


class PendingApprovalSchema(Schema):
    version = fields.Integer()
    action = _enum(("publish", "retire"))
    requested_by = fields.String()


class RuleVersionSchema(Schema):
    """One version of a rule (GET /rules/{key}/versions lists these)."""

    key = fields.String(metadata={"example": "smoking-brief-advice"})
    version = fields.Integer(metadata={"example": 3})
    title = fields.String()
    topic = fields.String(metadata={"example": "smoking"})
    kind = _enum(KINDS)
    status = _enum(RULE_STATUSES, "This version's status.")
    priority = fields.Integer()
    cooldown_days = fields.Integer()
    decline_days = fields.Integer()
    settings = fields.List(fields.String())
    staff_roles = fields.List(fields.String())
    organisations = fields.List(fields.String(), metadata={
        "description": "ODS codes it applies to; empty: every organisation."})
    when = fields.String(metadata={"example": "smoking_status == 'current'"})
    prompt = fields.Nested(RulePromptSchema)
    suggestions = fields.List(fields.String(metadata={"enum": list(SERVICE_TYPES)}))
    sources = fields.List(fields.Nested(RuleSourceSchema))
    updated_by = fields.String(allow_none=True)
    updated_at = IsoDateTime()


class RuleSchema(RuleVersionSchema):
    """A rule's latest version with the rule's own state."""

    rule_status = _enum(RULE_STATUSES, "The rule's status: active while a version is live.")
    active_version = fields.Integer(allow_none=True)
    latest_version = fields.Integer()
    pending_approval = fields.Nested(PendingApprovalSchema, allow_none=True, metadata={
        "description": "A publish or retire waiting for a second person, or null."})


class RulePageSchema(Schema):
    items = fields.List(fields.Nested(RuleSchema))
    next_cursor = fields.String(allow_none=True)


class RuleVersionPageSchema(Schema):
    items = fields.List(fields.Nested(RuleVersionSchema))
    next_cursor = fields.String(allow_none=True)


class ApprovalRuleSchema(Schema):
    key = fields.String()
    version = fields.Integer()


class ApprovalLinksSchema(Schema):
    approve = fields.String()
    reject = fields.String()
    diff = fields.String()


class PendingAnswerSchema(Schema):
    """202: the change waits for a second person (rules:approve)."""

    status = _enum(("pending_approval",))
    action = _enum(("publish", "retire"))
    rule = fields.Nested(ApprovalRuleSchema)
    requested_by = fields.String()
    links = fields.Nested(ApprovalLinksSchema)


class ApprovalRequestSchema(Schema):
    id = fields.Integer()
    rule = fields.Nested(ApprovalRuleSchema)
    action = _enum(("publish", "retire"))
    status = _enum(("pending", "approved", "rejected", "superseded"))
    requested_by = fields.String()
    requested_at = IsoDateTime()
    decided_by = fields.String(allow_none=True)
    decided_at = IsoDateTime(allow_none=True)
    reason = fields.String(allow_none=True)
    links = fields.Nested(ApprovalLinksSchema)


class ApprovalPageSchema(Schema):
    items = fields.List(fields.Nested(ApprovalRequestSchema))
    next_cursor = fields.String(allow_none=True)


class DiffLineSchema(Schema):
    op = _enum((" ", "-", "+"), "Kept, removed or added.")
    text = fields.String()


class ChangeSchema(Schema):
    field = fields.String(metadata={"example": "priority"})
    label = fields.String(metadata={"example": "Priority"})
    before = fields.Raw(metadata={"description": "The value before (any JSON type)."})
    after = fields.Raw(metadata={"description": "The value after (any JSON type)."})
    lines = fields.List(fields.Nested(DiffLineSchema), metadata={
        "description": "A line diff, for multi-line text."})


class RuleDiffSchema(Schema):
    rule = fields.String()
    from_ = fields.Integer(data_key="from", allow_none=True)
    to = fields.Integer()
    changes = fields.List(fields.Nested(ChangeSchema))


class AuditEntrySchema(Schema):
    id = fields.Integer()
    at = IsoDateTime()
    actor = fields.String()
    entity = _enum(ENTITIES)
    key = fields.String(allow_none=True)
    action = fields.String()
    detail = fields.Raw(allow_none=True, metadata={"description": "What changed (JSON)."})


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEntrySchema))
    next_cursor = fields.String(allow_none=True)


class DryRunRuleSchema(Schema):
    key = fields.String()
    version = fields.Integer()


class DryRunResultSchema(Schema):
    event_id = fields.String()
    source = fields.String()
    occurred_at = fields.String(metadata={"format": "date-time"})
    matches = fields.List(fields.Dict(), metadata={
        "description": "Every rule that matched, with each sub-condition's value."})
    shown = fields.List(fields.Dict(), metadata={
        "description": "What the screen would show: rule, topic, priority, summary."})
    deferred = fields.List(fields.Dict(), metadata={
        "description": "Matched but over the per-contact limit."})
    suppressed = fields.List(fields.Dict(), metadata={
        "description": "Matched but held back (declined, cooldown, ...): rule, code, reason."})


class DryRunAnswerSchema(Schema):
    rules = fields.List(fields.Nested(DryRunRuleSchema))
    results = fields.List(fields.Nested(DryRunResultSchema))


class ServiceContactSchema(Schema):
    phone = fields.String()
    email = fields.String()
    url = fields.String()


class ServiceSchema(Schema):
    id = fields.String(metadata={"example": "stop-smoking-manchester"})
    name = fields.String()
    service_type = _enum(SERVICE_TYPES)
    areas = fields.List(fields.String(), metadata={"example": ["M14"]})
    organisations = fields.List(fields.String())
    self_referral = fields.Boolean()
    contact = fields.Nested(ServiceContactSchema)
    referral_url = fields.String(allow_none=True)
    description = fields.String()


class ServicePageSchema(Schema):
    items = fields.List(fields.Nested(ServiceSchema))
    next_cursor = fields.String(allow_none=True)
