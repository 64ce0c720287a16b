"""Rules in the database: versions, drafts, publish, retire, audit; and the live rule set.

Every change adds a row to the audit log in the same transaction. Callers commit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mecc.admin.audit import record
from mecc.clinical.catalogue import Catalogue
from mecc.clinical.domain import RuleDef
from mecc.clinical.rulepack import RulePackError, parse_rule, rule_to_dict
from mecc.clinical.ruleset import RuleSet
from mecc.platform.db import utcnow
from mecc.platform.errors import Conflict, NotFound, ValidationFailed
from mecc.rules import CompiledExpression, compile_expression
from mecc.store.models import Rule, RuleVersion

# Fields that describe a version's place in history rather than what the rule says.
_HISTORY_FIELDS = ("version", "status", "updated_by", "updated_at")


def rule_body(rule: RuleDef) -> dict[str, Any]:
    body = rule_to_dict(rule)
    for name in _HISTORY_FIELDS:
        body.pop(name, None)
    return body


def parse_body(body: Any, catalogue: Catalogue) -> RuleDef:
    """An API rule body -> RuleDef, or 422 naming each bad field by its dotted path."""
    try:
        return parse_rule(body, catalogue)
    except RulePackError as exc:
        errors: dict[str, list[str]] = {}
        for item in exc.errors:
            message = item["message"]
            if "line" in item:
                message = f"{message} (line {item['line']}, column {item.get('column', 1)})"
            errors.setdefault(item.get("path") or "body", []).append(message)
        raise ValidationFailed("The rule is not valid: " + "; ".join(
            f"{k}: {v[0]}" for k, v in list(errors.items())[:3]), errors=errors) from None


def version_to_rule(row: RuleVersion, catalogue: Catalogue) -> RuleDef:
    rule = parse_rule({**row.body, "version": row.version, "status": row.status}, catalogue)
    return replace(rule, updated_by=row.updated_by, updated_at=row.updated_at)


def _state(session: Session, key: str) -> Rule:
    state = session.get(Rule, key)
    if state is None:
        raise NotFound(f"No rule '{key}'.")
    return state


def _version(session: Session, key: str, version: int) -> RuleVersion:
    row = session.scalar(select(RuleVersion).where(RuleVersion.key == key,
                                                   RuleVersion.version == version))
    if row is None:
        raise NotFound(f"Rule '{key}' has no version {version}.")
    return row


def latest_version(session: Session, key: str) -> RuleVersion:
    state = _state(session, key)
    return _version(session, key, state.latest_version)


def _add_version(session: Session, rule: RuleDef, *, actor: str) -> RuleVersion:
    state = session.get(Rule, rule.key)
    now = utcnow()
    if state is None:
        state = Rule(key=rule.key, status="draft", active_version=None, latest_version=0,
                     updated_at=now)
        session.add(state)
    state.latest_version += 1
    state.updated_at = now
    row = RuleVersion(key=rule.key, version=state.latest_version, status="draft",
                      body=rule_body(rule), updated_by=actor, updated_at=now)
    session.add(row)
    session.flush()
    record(session, actor=actor, entity="rule", key=rule.key, action="version_added",
           detail={"version": row.version, "body": row.body})
    return row


def create_rule(session: Session, rule: RuleDef, *, actor: str) -> RuleVersion:
    """A new rule as a draft, version 1 (409 when the key is taken)."""
    if session.get(Rule, rule.key) is not None:
        raise Conflict(f"A rule '{rule.key}' exists already; PUT /api/v1/rules/{rule.key} "
                       "adds a version.")
    return _add_version(session, rule, actor=actor)


def update_rule(session: Session, key: str, rule: RuleDef, *, actor: str) -> RuleVersion:
    """A new draft version of an existing rule."""
    _state(session, key)
    if rule.key != key:
        raise ValidationFailed("The key in the body differs from the URL.",
                               errors={"key": [f"Must be '{key}'."]})
    return _add_version(session, rule, actor=actor)


def publish(session: Session, key: str, version: int, *, actor: str) -> RuleVersion:
    """Make `version` the live one; the previously live version is retired."""
    state = _state(session, key)
    row = _version(session, key, version)
    previous = state.active_version
    if previous is not None and previous != version:
        _version(session, key, previous).status = "retired"
    row.status = "active"
    state.status, state.active_version, state.updated_at = "active", version, utcnow()
    record(session, actor=actor, entity="rule", key=key, action="published",
           detail={"version": version, "previous": previous})
    return row


def retire(session: Session, key: str, *, actor: str) -> Rule:
    """Stop a rule: no version of it is live."""
    state = _state(session, key)
    if state.active_version is not None:
        _version(session, key, state.active_version).status = "retired"
    previous = state.active_version
    state.status, state.active_version, state.updated_at = "retired", None, utcnow()
    record(session, actor=actor, entity="rule", key=key, action="retired",
           detail={"version": previous})
    return state


def versions(session: Session, key: str) -> list[RuleVersion]:
    _state(session, key)
    return list(session.scalars(select(RuleVersion).where(RuleVersion.key == key)
                                .order_by(RuleVersion.version)))


def list_rules(session: Session, *, status: str | None = None) -> list[tuple[Rule, RuleVersion]]:
    """Each rule's state with its live version (or its latest, when none is live)."""
    states = list(session.scalars(select(Rule).order_by(Rule.key)))
    if status:
        states = [s for s in states if s.status == status]
    rows = {(r.key, r.version): r for r in session.scalars(select(RuleVersion).where(
        RuleVersion.key.in_([s.key for s in states])))}
    return [(s, rows[(s.key, s.active_version or s.latest_version)]) for s in states]


@dataclass(frozen=True)
class LoadSummary:
    added: list[str]
    unchanged: list[str]
    published: list[str]


def load_rules(session: Session, rules: Iterable[RuleDef], *, actor: str) -> LoadSummary:
    """Load a rule pack: a new version only where the body changed; `status: active` publishes.

    Loading the same pack twice changes nothing, so `make run` can load it on every start.
    """
    added, unchanged, published = [], [], []
    for rule in rules:
        state = session.get(Rule, rule.key)
        current_row = (_version(session, rule.key, state.latest_version)
                       if state is not None and state.latest_version else None)
        if current_row is not None and current_row.body == rule_body(rule):
            row = current_row
            unchanged.append(rule.key)
        else:
            row = _add_version(session, rule, actor=actor)
            added.append(rule.key)
        state = session.get(Rule, rule.key)
        if rule.status == "active" and state is not None and state.active_version != row.version:
            publish(session, rule.key, row.version, actor=actor)
            published.append(rule.key)
        elif rule.status == "retired" and state is not None and state.status != "retired":
            retire(session, rule.key, actor=actor)
    return LoadSummary(added, unchanged, published)


def live_rules(session: Session, catalogue: Catalogue) -> list[RuleDef]:
    rows = session.scalars(select(RuleVersion).join(Rule, (Rule.key == RuleVersion.key) & (
        Rule.active_version == RuleVersion.version)).order_by(RuleVersion.key))
    return [version_to_rule(row, catalogue) for row in rows]


def revision(session: Session) -> tuple[int, datetime | None]:
    """Changes whenever any rule changes: a cheap check before trusting a cached rule set."""
    count, latest = session.execute(select(func.count(Rule.key), func.max(Rule.updated_at))).one()
    return int(count), latest


class LiveRuleCache:
    """The live RuleSet, rebuilt only when the rules change; expressions compiled once per
    (key, version). Workers call `get` per batch, so a publish takes effect without a restart.
    """

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._lock = threading.Lock()
        self._revision: tuple[int, datetime | None] | None = None
        self._ruleset: RuleSet = RuleSet([])
        self._compiled: dict[tuple[str, int], CompiledExpression] = {}

    def compiled(self, rule: RuleDef) -> CompiledExpression:
        key = (rule.key, rule.version)
        expression = self._compiled.get(key)
        if expression is None:
            expression = compile_expression(rule.when, self.catalogue)
            self._compiled[key] = expression
        return expression

    def get(self, session: Session) -> RuleSet:
        current = revision(session)
        if current == self._revision:
            return self._ruleset
        with self._lock:
            rules = live_rules(session, self.catalogue)
            self._ruleset = RuleSet([(r, self.compiled(r)) for r in rules])
            self._revision = current
        return self._ruleset


def ruleset_for(rules: Iterable[RuleDef], cache: LiveRuleCache) -> RuleSet:
    """A RuleSet of arbitrary rule versions (dry-run, back-test) sharing the compile cache."""
    return RuleSet([(r, cache.compiled(r)) for r in rules])


def version_dict(row: RuleVersion, state: Rule | None = None) -> dict[str, Any]:
    body: Mapping[str, Any] = row.body
    out = {**body, "version": row.version, "status": row.status,
           "updated_by": row.updated_by,
           "updated_at": row.updated_at.isoformat().replace("+00:00", "Z")}
    if state is not None:
        out["rule_status"] = state.status
        out["active_version"] = state.active_version
        out["latest_version"] = state.latest_version
    return out
