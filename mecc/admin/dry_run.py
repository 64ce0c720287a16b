"""Administrators' rule work that stores nothing: validate an expression, dry-run rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from mecc.admin import rule_store
from mecc.admin.keys import Principal
from mecc.clinical.domain import PastPrompt, PersonHistory, RuleDef
from mecc.clinical.ruleset import RuleSet, evaluate
from mecc.clinical.templates import render_prompt
from mecc.evaluation.pipeline import _same_person, contact_event, load_history
from mecc.intake.service import build_row, validate_event
from mecc.platform.errors import NotFound, ValidationFailed
from mecc.platform.runtime import Runtime
from mecc.rules import check_expression
from mecc.store.models import Rule, RuleVersion

MAX_DRY_RUN_EVENTS = 100
MAX_DRY_RUN_RULES = 200


def validate_when(runtime: Runtime, when: str) -> dict[str, Any]:
    diagnostics = check_expression(when, runtime.catalogue)
    return {"ok": not diagnostics, "errors": [d.to_dict() for d in diagnostics]}


def _rules_for_dry_run(runtime: Runtime, session: Any, items: Sequence[Any]) -> list[RuleDef]:
    if not items:
        return rule_store.live_rules(session, runtime.catalogue)
    rules: list[RuleDef] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            state = session.get(Rule, item)
            if state is None:
                raise ValidationFailed(f"No rule '{item}'.",
                                       errors={f"rules.{index}": [f"No rule '{item}'."]})
            version = state.active_version or state.latest_version
            row = session.scalar(select(RuleVersion).where(RuleVersion.key == item,
                                                           RuleVersion.version == version))
            if row is None:
                raise NotFound(f"Rule '{item}' has no version {version}.")
            rules.append(rule_store.version_to_rule(row, runtime.catalogue))
        else:
            try:
                rules.append(rule_store.parse_body(item, runtime.catalogue))
            except ValidationFailed as exc:
                raise ValidationFailed(exc.detail, errors={
                    f"rules.{index}.{k}": v for k, v in exc.errors.items()}) from None
    keys = [r.key for r in rules]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValidationFailed("Each rule may appear once.",
                               errors={"rules": [f"Repeated: {', '.join(duplicates)}."]})
    return rules


def dry_run(runtime: Runtime, principal: Principal, rule_items: Sequence[Any],
            event_bodies: Sequence[Any], *, use_history: bool = True) -> dict[str, Any]:
    """Per event: matches (with each sub-condition's value), shown, deferred, suppressed.

    Events are taken in the order given, and each one's would-be prompts count as history for
    the later ones of the same person (so a sequence shows same-day and cooldown effects).
    Stored history is read only for organisations this key may see, and only the prompts
    those organisations raised: a dry-run must not become a way to ask what another
    organisation knows about a person (an NHS number is enough to name one). Nothing is
    written.
    """
    if len(event_bodies) > MAX_DRY_RUN_EVENTS:
        raise ValidationFailed(f"At most {MAX_DRY_RUN_EVENTS} events.",
                               errors={"events": [f"Longer than {MAX_DRY_RUN_EVENTS}."]})
    if len(rule_items) > MAX_DRY_RUN_RULES:
        raise ValidationFailed(f"At most {MAX_DRY_RUN_RULES} rules.",
                               errors={"rules": [f"Longer than {MAX_DRY_RUN_RULES}."]})
    rows = []
    errors: dict[str, list[str]] = {}
    for index, body in enumerate(event_bodies):
        try:
            data = validate_event(runtime, body)
        except ValidationFailed as exc:
            errors.update({f"events.{index}.{k}": v for k, v in exc.errors.items()})
            continue
        rows.append(build_row(runtime, principal, body, data))
    if errors:
        raise ValidationFailed("Some events are not valid.", errors=errors)

    cache = runtime.dry_run_rules
    results = []
    with runtime.db.session() as session:
        rules = _rules_for_dry_run(runtime, session, rule_items)
        ruleset: RuleSet = rule_store.ruleset_for(rules, cache)
        visible = [r for r in rows if principal.may_access(r.organisation)]
        history = load_history(session, visible) if use_history else {}
        so_far: list[tuple[Any, list[PastPrompt]]] = []
        for row in rows:
            past = [p for p in history.get(row.id, ())
                    if p.organisation is not None and principal.may_access(p.organisation)]
            for earlier, prompts in so_far:
                if _same_person(earlier, row):
                    past.extend(prompts)
            event = contact_event(row, runtime.catalogue)
            decision = evaluate(event, ruleset, PersonHistory(tuple(past)),
                                max_prompts_per_contact=runtime.settings.max_prompts_per_contact,
                                explain=True)
            so_far.append((row, [PastPrompt(c.rule.key, c.rule.topic, row.occurred_at,
                                            c.status, row.id, row.organisation)
                                 for c in (*decision.shown, *decision.deferred)]))
            out = decision.to_dict()
            out.pop("event_id", None)
            for entry, candidate in zip((*out["shown"], *out["deferred"]),
                                        (*decision.shown, *decision.deferred), strict=True):
                entry["summary"], _ = render_prompt(candidate.rule, dict(event.context.facts))
            results.append({"event_id": row.event_id, "source": row.source,
                            "occurred_at": row.occurred_at.isoformat(), **out})
    return {"rules": [{"key": r.key, "version": r.version} for r in rules],
            "results": results}


def audit_entries(session: Any, *, entity: str | None, key: str | None, limit: int,
                  before_id: int | None) -> list[Mapping[str, Any]]:
    from mecc.store.models import AuditEntry

    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if entity:
        query = query.where(AuditEntry.entity == entity)
    if key:
        query = query.where(AuditEntry.entity_key == key)
    if before_id:
        query = query.where(AuditEntry.id < before_id)
    return [{"id": a.id, "at": a.at.isoformat().replace("+00:00", "Z"), "actor": a.actor,
             "entity": a.entity, "key": a.entity_key, "action": a.action, "detail": a.detail}
            for a in session.scalars(query)]
