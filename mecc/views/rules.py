"""Rules: author, validate, dry-run, version, publish, retire; and the audit log."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import fields, validate

from mecc.admin import dry_run as rule_admin
from mecc.admin import rule_store
from mecc.platform.auth import require_scope
from mecc.platform.errors import ValidationFailed
from mecc.platform.fields import Schema, one_of
from mecc.platform.runtime import current
from mecc.views import json_body

blp = Blueprint("rules", __name__, url_prefix="/api/v1",
                description="Administrator-owned rules: versioned, validated, audited.")

RULE_BODY_DOC = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "A rule: key, title, topic, kind, when, settings, "
    "staff_roles, priority, cooldown_days, decline_days, prompt {summary, detail, indicator}, "
    "suggestions, sources (see config/rules/default.yaml).",
    "required": ["key", "title", "topic", "kind", "when", "priority", "prompt"]}}}}


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


class DryRunSchema(Schema):
    rules = fields.List(fields.Raw(), load_default=list, metadata={
        "description": "Rule keys (their live or latest version) or draft rule bodies; "
                       "empty: every live rule."})
    events = fields.List(fields.Dict(), required=True,
                         validate=validate.Length(min=1, max=rule_admin.MAX_DRY_RUN_EVENTS))
    use_history = fields.Boolean(load_default=True, metadata={
        "description": "Take the people's stored prompt history into account."})


class PublishSchema(Schema):
    version = fields.Integer(required=True, validate=validate.Range(min=1))


class RuleQuerySchema(Schema):
    status = fields.String(validate=one_of(("draft", "active", "retired")))


class AuditQuerySchema(Schema):
    entity = fields.String(validate=one_of(("rule", "key", "prompt", "service")))
    key = fields.String(validate=validate.Length(max=100))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.Integer(validate=validate.Range(min=1))


def _actor() -> str:
    return f"{g.principal.name} (key {g.principal.key_id})"


@blp.route("/rules", methods=["GET"])
@require_scope("rules:read")
@blp.arguments(RuleQuerySchema, location="query", as_kwargs=True)
def list_rules(status: str | None = None) -> Any:
    """Every rule with its live version (or its latest draft)."""
    with current().db.session() as session:
        return {"items": [rule_store.version_dict(row, state) for state, row in
                          rule_store.list_rules(session, status=status)], "next_cursor": None}


@blp.route("/rules", methods=["POST"])
@require_scope("rules:write")
@blp.doc(requestBody=RULE_BODY_DOC)
def create_rule() -> Any:
    """Create a rule as a draft (version 1)."""
    runtime = current()
    rule = rule_store.parse_body(json_body(), runtime.catalogue)
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
@blp.arguments(DryRunSchema)
def dry_run(body: dict[str, Any]) -> Any:
    """Which rules match example events, why, and what would show or be suppressed."""
    return rule_admin.dry_run(current(), g.principal, body["rules"], body["events"],
                              use_history=body["use_history"])


@blp.route("/rules/<string:key>", methods=["GET"])
@require_scope("rules:read")
def get_rule(key: str) -> Any:
    """A rule's latest version and its state."""
    with current().db.session() as session:
        row = rule_store.latest_version(session, key)
        return rule_store.version_dict(row, session.get(rule_store.Rule, key))


@blp.route("/rules/<string:key>", methods=["PUT"])
@require_scope("rules:write")
@blp.doc(requestBody=RULE_BODY_DOC)
def update_rule(key: str) -> Any:
    """Add a draft version of a rule (publish it to make it live)."""
    runtime = current()
    body = json_body()
    if isinstance(body, dict):
        body = {"key": key, **body}
    rule = rule_store.parse_body(body, runtime.catalogue)
    with runtime.db.session() as session:
        row = rule_store.update_rule(session, key, rule, actor=_actor())
        session.commit()
        return rule_store.version_dict(row, session.get(rule_store.Rule, key))


@blp.route("/rules/<string:key>/publish", methods=["POST"])
@require_scope("rules:write")
@blp.arguments(PublishSchema)
def publish_rule(body: dict[str, Any], key: str) -> Any:
    """Make a version live (workers pick it up without a restart)."""
    with current().db.session() as session:
        row = rule_store.publish(session, key, body["version"], actor=_actor())
        session.commit()
        return rule_store.version_dict(row, session.get(rule_store.Rule, key))


@blp.route("/rules/<string:key>/retire", methods=["POST"])
@require_scope("rules:write")
def retire_rule(key: str) -> Any:
    """Stop a rule: no version of it is live."""
    with current().db.session() as session:
        state = rule_store.retire(session, key, actor=_actor())
        session.commit()
        return rule_store.version_dict(rule_store.latest_version(session, key), state)


@blp.route("/rules/<string:key>/versions", methods=["GET"])
@require_scope("rules:read")
def rule_versions(key: str) -> Any:
    """Every version of a rule, oldest first."""
    with current().db.session() as session:
        return {"items": [rule_store.version_dict(r) for r in rule_store.versions(session, key)],
                "next_cursor": None}


@blp.route("/audit", methods=["GET"])
@require_scope("rules:read", "admin")
@blp.arguments(AuditQuerySchema, location="query", as_kwargs=True)
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
