"""Rules: author, validate, dry-run, version, publish, retire, approve; and the audit log."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import fields, validate

from mecc.admin import dry_run as rule_admin
from mecc.admin import rule_approval, rule_store
from mecc.admin.audit import ENTITIES
from mecc.platform.errors import ValidationFailed
from mecc.platform.fields import Schema, one_of
from mecc.platform.runtime import current
from mecc.views import json_body
from mecc.views.admin_responses import (
    ApprovalPageSchema,
    ApprovalRequestSchema,
    AuditPageSchema,
    DryRunAnswerSchema,
    PendingAnswerSchema,
    RuleDiffSchema,
    RulePageSchema,
    RuleSchema,
    RuleVersionPageSchema,
)
from mecc.views.auth import require_scope
from mecc.views.bodies import json_body as body_doc
from mecc.views.openapi import RESERVED_RULE_KEYS, RULE_KEY_PATTERN

blp = Blueprint("rules", __name__, url_prefix="/api/v1",
                description="Administrator-owned rules: versioned, validated, audited.")

# The rule bodies are components built from the fact catalogue (mecc.views.bodies).
RULE_EXAMPLE = {
    "key": "smoking-brief-advice", "title": "Very brief advice on smoking", "topic": "smoking",
    "kind": "lifestyle_conversation", "priority": 80, "cooldown_days": 180,
    "when": "smoking_status == 'current'", "settings": ["general_practice"],
    "prompt": {"summary": "Smokes: offer very brief advice and a referral.",
               "detail": "**Ask, advise, act.**", "indicator": "warning"},
    "suggestions": ["stop_smoking"],
    "sources": [{"label": "NICE NG209", "url": "https://www.nice.org.uk/guidance/ng209"}]}
# A version number in a path: the rule pack's bounds, so a larger one is a 404, not an overflow.
VERSION = "<int(min=1, max=1000000):version>"


class ValidateSchema(Schema):
    when = fields.String(required=True, validate=validate.Length(max=4000))


class DiagnosticSchema(Schema):
    line = fields.Integer()
    column = fields.Integer()
    message = fields.String()
    hint = fields.String()


class ValidateResultSchema(Schema):
    ok = fields.Boolean()
    errors = fields.List(fields.Nested(DiagnosticSchema))


class DryRunRequestSchema(Schema):
    rules = fields.List(fields.Raw(metadata={"oneOf": [
        {"type": "string", "pattern": RULE_KEY_PATTERN},
        {"$ref": "#/components/schemas/RuleCreate"}]}), load_default=list, metadata={
        "description": "Rule keys (their live or latest version) or draft rule bodies; "
                       "empty: every live rule."})
    events = fields.List(fields.Dict(metadata={"allOf": [
        {"$ref": "#/components/schemas/ContactEvent"}]}), required=True,
        validate=validate.Length(min=1, max=rule_admin.MAX_DRY_RUN_EVENTS))
    use_history = fields.Boolean(load_default=True, metadata={
        "description": "Take the people's stored prompt history into account."})


class PublishSchema(Schema):
    version = fields.Integer(required=True, validate=validate.Range(min=1))


class RejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class DiffQuerySchema(Schema):
    before = fields.Integer(data_key="from", validate=validate.Range(min=1), metadata={
        "description": "The version to compare against; default: the live version."})
    after = fields.Integer(data_key="to", required=True, validate=validate.Range(min=1))


class ApprovalQuerySchema(Schema):
    status = fields.String(load_default="pending", validate=one_of(
        ("pending", "approved", "rejected", "superseded", "all")))
    key = fields.String(validate=validate.Length(max=100))


class RuleQuerySchema(Schema):
    status = fields.String(validate=one_of(("draft", "active", "retired")))


class AuditQuerySchema(Schema):
    entity = fields.String(validate=one_of(ENTITIES))
    key = fields.String(validate=validate.Length(max=100))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.Integer(validate=validate.Range(min=1))


def _actor() -> rule_store.Actor:
    principal = g.principal
    return rule_store.Actor(label=principal.actor, identity=principal.key_id,
                            organisation=principal.organisation)


# What GET says about a rule's state, not what it says: a GET -> edit -> PUT round trip works.
_STATE_FIELDS = ("rule_status", "active_version", "latest_version", "pending_approval")


def _without_state(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    return {k: v for k, v in body.items() if k not in _STATE_FIELDS}


def _approval_required() -> bool:
    return current().settings.publish_approval == "required"


def _answer(session: Any, key: str, outcome: rule_approval.Outcome) -> Any:
    """200 with the rule when it changed at once; 202 when the change waits for approval."""
    if outcome.request is not None and outcome.request.status == "pending":
        return rule_approval.pending_answer(outcome.request), 202
    return rule_store.version_dict(outcome.row, outcome.state,
                                   rule_store.pending_request(session, key))


@blp.route("/rules", methods=["GET"])
@require_scope("rules:read")
@blp.arguments(RuleQuerySchema, location="query", as_kwargs=True)
@blp.alt_response(200, schema=RulePageSchema, success=True, description="The rules.")
def list_rules(status: str | None = None) -> Any:
    """Every rule with its live version (or its latest draft)."""
    with current().db.session() as session:
        pending = rule_store.pending_requests(session)
        return {"items": [rule_store.version_dict(row, state, pending.get(state.key))
                          for state, row in rule_store.list_rules(session, status=status)],
                "next_cursor": None}


@blp.route("/rules", methods=["POST"])
@require_scope("rules:write")
@blp.doc(requestBody=body_doc("RuleCreate", RULE_EXAMPLE))
@blp.alt_response(201, schema=RuleSchema, success=True, description="Created as a draft.")
def create_rule() -> Any:
    """Create a rule as a draft (version 1)."""
    runtime = current()
    rule = rule_store.parse_body(_without_state(json_body()), runtime.catalogue)
    if rule.key in RESERVED_RULE_KEYS:
        raise ValidationFailed(f"'{rule.key}' names an operation under /rules/.",
                               errors={"key": ["Choose another key."]})
    with runtime.db.session() as session:
        row = rule_store.create_rule(session, rule, actor=_actor())
        session.commit()
        return rule_store.version_dict(row, session.get(rule_store.Rule, rule.key)), 201


@blp.route("/rules/validate", methods=["POST"])
@require_scope("rules:read", "rules:write")
@blp.arguments(ValidateSchema)
@blp.response(200, ValidateResultSchema)
def validate_rule(body: dict[str, Any]) -> Any:
    """Check an expression: ok, or errors with line, column, message and a hint."""
    return rule_admin.validate_when(current(), body["when"])


@blp.route("/rules/dry-run", methods=["POST"])
@require_scope("rules:read", "rules:write")
@blp.arguments(DryRunRequestSchema)
@blp.alt_response(200, schema=DryRunAnswerSchema, success=True,
                  description="Per event: matches, shown, deferred, suppressed.")
def dry_run(body: dict[str, Any]) -> Any:
    """Which rules match example events, why, and what would show or be suppressed."""
    return rule_admin.dry_run(current(), g.principal, body["rules"], body["events"],
                              use_history=body["use_history"])


@blp.route("/rules/<rule_key:key>", methods=["GET"])
@require_scope("rules:read")
@blp.alt_response(200, schema=RuleSchema, success=True, description="The rule.")
def get_rule(key: str) -> Any:
    """A rule's latest version and its state."""
    with current().db.session() as session:
        row = rule_store.latest_version(session, key)
        return rule_store.version_dict(row, session.get(rule_store.Rule, key),
                                       rule_store.pending_request(session, key))


@blp.route("/rules/<rule_key:key>", methods=["PUT"])
@require_scope("rules:write")
@blp.doc(requestBody=body_doc("RuleUpdate", {k: v for k, v in RULE_EXAMPLE.items()
                                             if k != "key"}))
@blp.alt_response(200, schema=RuleSchema, success=True, description="The new draft version.")
def update_rule(key: str) -> Any:
    """Add a draft version of a rule (publish it to make it live)."""
    runtime = current()
    body = json_body()
    if isinstance(body, dict):
        body = {"key": key, **_without_state(body)}
    rule = rule_store.parse_body(body, runtime.catalogue)
    with runtime.db.session() as session:
        row = rule_store.update_rule(session, key, rule, actor=_actor())
        session.commit()
        return rule_store.version_dict(row, session.get(rule_store.Rule, key),
                                       rule_store.pending_request(session, key))


@blp.route("/rules/<rule_key:key>/publish", methods=["POST"])
@require_scope("rules:write")
@blp.arguments(PublishSchema)
@blp.alt_response(200, schema=RuleSchema, success=True,
                  description="Live now (MECC_PUBLISH_APPROVAL=off).")
@blp.alt_response(202, schema=PendingAnswerSchema, success=True,
                  description="Waiting for another person's approval.")
def publish_rule(body: dict[str, Any], key: str) -> Any:
    """Make a version live: once someone else approves it (202, pending_approval), or at once
    (200) with MECC_PUBLISH_APPROVAL=off. Workers pick it up without a restart."""
    with current().db.session() as session:
        outcome = rule_approval.publish(session, key, body["version"], actor=_actor(),
                                        approval_required=_approval_required())
        session.commit()
        return _answer(session, key, outcome)


@blp.route("/rules/<rule_key:key>/retire", methods=["POST"])
@require_scope("rules:write")
@blp.alt_response(200, schema=RuleSchema, success=True,
                  description="Retired now (MECC_PUBLISH_APPROVAL=off).")
@blp.alt_response(202, schema=PendingAnswerSchema, success=True,
                  description="Waiting for another person's approval.")
def retire_rule(key: str) -> Any:
    """Stop a rule (no version of it live): through approval like publishing (202)."""
    with current().db.session() as session:
        outcome = rule_approval.retire(session, key, actor=_actor(),
                                       approval_required=_approval_required())
        session.commit()
        return _answer(session, key, outcome)


@blp.route(f"/rules/<rule_key:key>/versions/{VERSION}/approve", methods=["POST"])
@require_scope("rules:approve")
@blp.alt_response(200, schema=RuleSchema, success=True, description="It took effect.")
def approve_version(key: str, version: int) -> Any:
    """Approve the pending publish (or retire) of this version: it takes effect now. The
    identity that asked for it cannot approve it (403)."""
    with current().db.session() as session:
        outcome = rule_approval.approve(session, key, version, actor=_actor())
        session.commit()
        return _answer(session, key, outcome)


@blp.route(f"/rules/<rule_key:key>/versions/{VERSION}/reject", methods=["POST"])
@require_scope("rules:approve", "rules:write")
@blp.arguments(RejectSchema)
@blp.alt_response(200, schema=ApprovalRequestSchema, success=True,
                  description="Rejected (or withdrawn); the version stays a draft.")
def reject_version(body: dict[str, Any], key: str, version: int) -> Any:
    """Turn down the pending request for this version: it stays a draft. A reviewer
    (rules:approve) rejects; whoever asked may withdraw their own request."""
    with current().db.session() as session:
        request = rule_approval.reject(session, key, version, actor=_actor(),
                                       reason=body["reason"],
                                       may_approve=g.principal.has_scope("rules:approve"))
        session.commit()
        return rule_approval.request_dict(request)


@blp.route("/rules/<rule_key:key>/diff", methods=["GET"])
@require_scope("rules:read")
@blp.arguments(DiffQuerySchema, location="query", as_kwargs=True)
@blp.alt_response(200, schema=RuleDiffSchema, success=True, description="The changes.")
def diff_versions(key: str, after: int, before: int | None = None) -> Any:
    """What a version changes, field by field, against another (default: the live one)."""
    with current().db.session() as session:
        base, changes = rule_store.diff_versions(session, key, before=before, after=after)
    return {"rule": key, "from": base, "to": after,
            "changes": [c.to_dict() for c in changes]}


@blp.route("/rule-approvals", methods=["GET"])
@require_scope("rules:read")
@blp.arguments(ApprovalQuerySchema, location="query", as_kwargs=True)
@blp.alt_response(200, schema=ApprovalPageSchema, success=True, description="The requests.")
def list_approvals(status: str = "pending", key: str | None = None) -> Any:
    """Publish and retire requests, newest first (default: those waiting for approval)."""
    with current().db.session() as session:
        rows = rule_approval.requests(session, status=None if status == "all" else status,
                                      key=key)
        return {"items": [rule_approval.request_dict(r) for r in rows], "next_cursor": None}


@blp.route("/rules/<rule_key:key>/versions", methods=["GET"])
@require_scope("rules:read")
@blp.alt_response(200, schema=RuleVersionPageSchema, success=True,
                  description="Every version.")
def rule_versions(key: str) -> Any:
    """Every version of a rule, oldest first."""
    with current().db.session() as session:
        return {"items": [rule_store.version_dict(r) for r in rule_store.versions(session, key)],
                "next_cursor": None}


@blp.route("/audit", methods=["GET"])
@require_scope("rules:read", "admin")
@blp.arguments(AuditQuerySchema, location="query", as_kwargs=True)
@blp.alt_response(200, schema=AuditPageSchema, success=True, description="Newest first.")
def audit(entity: str | None = None, key: str | None = None, limit: int = 50,
          cursor: int | None = None) -> Any:
    """Who changed what, when (rules; keys, services and outcomes need `admin`)."""
    if entity != "rule" and not g.principal.has_scope("admin"):
        raise ValidationFailed("Only rule history is readable without the admin scope.",
                               errors={"entity": ["Must be 'rule' for this key."]})
    with current().db.session() as session:
        rows = rule_admin.audit_entries(session, entity=entity, key=key, limit=limit,
                                        before_id=cursor)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": str(rows[-1]["id"]) if more else None}
