"""Rules in the database: versions, drafts, publish, retire, audit; and the live rule set.

Every change adds a row to the audit log in the same transaction. Callers commit. Whoever acts
is an `Actor`: a key or user bound to one organisation changes only that organisation's rules.
Approval of publish and retire requests (a second pair of eyes) is in rule_approval.py.
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
from mecc.clinical.rule_diff import Change, diff_bodies
from mecc.clinical.rulepack import RulePackError, parse_rule, rule_to_dict
from mecc.clinical.ruleset import RuleSet
from mecc.platform.db import utcnow
from mecc.platform.errors import Conflict, Forbidden, NotFound, ValidationFailed
from mecc.rules import CompiledExpression, compile_expression
from mecc.store.models import Rule, RuleApproval, RuleVersion

# Fields that describe a version's place in history rather than what the rule says.
_HISTORY_FIELDS = ("version", "status", "updated_by", "updated_at")
ALL_ORGANISATIONS = "*"


@dataclass(frozen=True)
class Actor:
    """Who changes rules: how the audit log names them, their identity (a key's or a user's id)
    for the "never approve your own change" check, and their organisation ("*": every one)."""

    label: str
    identity: str
    organisation: str = ALL_ORGANISATIONS

    @classmethod
    def system(cls, name: str) -> Actor:
        """The command line (`mecc seed`, `mecc rules load`): every organisation."""
        return cls(label=name, identity=f"cli:{name}")


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


def rule_state(session: Session, key: str) -> Rule:
    state = session.get(Rule, key)
    if state is None:
        raise NotFound(f"No rule '{key}'.")
    return state


def version_row(session: Session, key: str, version: int) -> RuleVersion:
    row = session.scalar(select(RuleVersion).where(RuleVersion.key == key,
                                                   RuleVersion.version == version))
    if row is None:
        raise NotFound(f"Rule '{key}' has no version {version}.")
    return row


def latest_version(session: Session, key: str) -> RuleVersion:
    state = rule_state(session, key)
    return version_row(session, key, state.latest_version)


# ---------------------------------------------------------------------------------------------
# Organisation scope


def organisations_of(body: Mapping[str, Any]) -> list[str]:
    return sorted(body.get("organisations") or [])


def check_scope(actor: Actor, what: str, *bodies: Mapping[str, Any] | None) -> None:
    """403 unless every body given is exactly the actor's organisation's (a `*` actor: any).

    A rule for every organisation (no `organisations`) or for several is beyond one
    organisation's keys: changing it would change what other organisations' staff see.
    """
    if actor.organisation == ALL_ORGANISATIONS:
        return
    own = [actor.organisation]
    for body in bodies:
        if body is None:
            continue
        found = organisations_of(body)
        if found != own:
            shown = ", ".join(found) if found else "every organisation"
            raise Forbidden(
                f"This key is bound to {actor.organisation}: it may {what} only rules whose "
                f"organisations are exactly ['{actor.organisation}'] (this one: {shown}).")


def live_body(session: Session, state: Rule) -> dict[str, Any] | None:
    if state.active_version is None:
        return None
    return version_row(session, state.key, state.active_version).body


# ---------------------------------------------------------------------------------------------
# Versions


def _add_version(session: Session, rule: RuleDef, *, actor: Actor) -> RuleVersion:
    state = session.get(Rule, rule.key)
    now = utcnow()
    if state is None:
        state = Rule(key=rule.key, status="draft", active_version=None, latest_version=0,
                     updated_at=now)
        session.add(state)
    state.latest_version += 1
    state.updated_at = now
    row = RuleVersion(key=rule.key, version=state.latest_version, status="draft",
                      body=rule_body(rule), updated_by=actor.label, updated_at=now)
    session.add(row)
    session.flush()
    record(session, actor=actor.label, entity="rule", key=rule.key, action="version_added",
           detail={"version": row.version, "body": row.body})
    return row


def create_rule(session: Session, rule: RuleDef, *, actor: Actor) -> RuleVersion:
    """A new rule as a draft, version 1 (409 when the key is taken)."""
    check_scope(actor, "create", rule_body(rule))
    if session.get(Rule, rule.key) is not None:
        raise Conflict(f"A rule '{rule.key}' exists already; PUT /api/v1/rules/{rule.key} "
                       "adds a version.")
    return _add_version(session, rule, actor=actor)


def update_rule(session: Session, key: str, rule: RuleDef, *, actor: Actor) -> RuleVersion:
    """A new draft version of an existing rule."""
    state = rule_state(session, key)
    if rule.key != key:
        raise ValidationFailed("The key in the body differs from the URL.",
                               errors={"key": [f"Must be '{key}'."]})
    check_scope(actor, "edit", version_row(session, key, state.latest_version).body,
                live_body(session, state), rule_body(rule))
    return _add_version(session, rule, actor=actor)


def _supersede_pending(session: Session, key: str, *, actor: Actor, why: str) -> None:
    """Any request still waiting for approval no longer describes the next change."""
    for request in session.scalars(select(RuleApproval).where(
            RuleApproval.key == key, RuleApproval.status == "pending")):
        request.status, request.decided_by, request.decided_at = "superseded", actor.label, \
            utcnow()
        record(session, actor=actor.label, entity="rule", key=key, action="request_superseded",
               detail={"version": request.version, "action": request.action, "why": why})


def publish(session: Session, key: str, version: int, *, actor: Actor,
            detail: Mapping[str, Any] | None = None) -> RuleVersion:
    """Make `version` the live one now; the previously live version is retired."""
    state = rule_state(session, key)
    row = version_row(session, key, version)
    check_scope(actor, "publish", row.body, live_body(session, state))
    previous = state.active_version
    if previous is not None and previous != version:
        version_row(session, key, previous).status = "retired"
    row.status = "active"
    state.status, state.active_version, state.updated_at = "active", version, utcnow()
    _supersede_pending(session, key, actor=actor, why=f"version {version} was published")
    record(session, actor=actor.label, entity="rule", key=key, action="published",
           detail={"version": version, "previous": previous, **(detail or {})})
    return row


def retire(session: Session, key: str, *, actor: Actor,
           detail: Mapping[str, Any] | None = None) -> Rule:
    """Stop a rule now: no version of it is live."""
    state = rule_state(session, key)
    check_scope(actor, "retire", live_body(session, state) or
                version_row(session, key, state.latest_version).body)
    if state.active_version is not None:
        version_row(session, key, state.active_version).status = "retired"
    previous = state.active_version
    state.status, state.active_version, state.updated_at = "retired", None, utcnow()
    _supersede_pending(session, key, actor=actor, why="the rule was retired")
    record(session, actor=actor.label, entity="rule", key=key, action="retired",
           detail={"version": previous, **(detail or {})})
    return state


def open_request(session: Session, key: str, version: int, action: str, *,
                 actor: Actor) -> RuleApproval:
    """Ask for a second person's approval to publish `version` or retire the rule."""
    state = rule_state(session, key)
    row = version_row(session, key, version)
    check_scope(actor, action, row.body, live_body(session, state))
    _supersede_pending(session, key, actor=actor,
                       why=f"a new request to {action} version {version}")
    request = RuleApproval(key=key, version=version, action=action, status="pending",
                           requested_by=actor.label, requester=actor.identity,
                           requested_at=utcnow())
    session.add(request)
    session.flush()
    record(session, actor=actor.label, entity="rule", key=key, action=f"{action}_requested",
           detail={"version": version, "request": request.id})
    return request


def pending_request(session: Session, key: str) -> RuleApproval | None:
    return session.scalar(select(RuleApproval).where(RuleApproval.key == key,
                                                     RuleApproval.status == "pending"))


def pending_requests(session: Session) -> dict[str, RuleApproval]:
    """Every rule's request waiting for approval, by rule key."""
    return {r.key: r for r in session.scalars(select(RuleApproval).where(
        RuleApproval.status == "pending"))}


def versions(session: Session, key: str) -> list[RuleVersion]:
    rule_state(session, key)
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


def diff_versions(session: Session, key: str, *, before: int | None, after: int
                  ) -> tuple[int | None, list[Change]]:
    """What version `after` changes relative to `before` (None: the live version; with nothing
    live, every field is new). Returns the version compared against, and the changes."""
    state = rule_state(session, key)
    base = before if before is not None else state.active_version
    old = version_row(session, key, base).body if base else None
    return base, diff_bodies(old, version_row(session, key, after).body)


# ---------------------------------------------------------------------------------------------
# Rule packs (mecc seed, mecc rules load)


@dataclass(frozen=True)
class LoadSummary:
    added: list[str]  # rules whose keys were new (version 1)
    drafted: list[tuple[str, int, list[Change]]]  # installed rules given a new draft version
    unchanged: list[str]  # installed rules left exactly as they are
    published: list[str]  # new rules made live at once
    awaiting_approval: list[str]  # new rules whose publication waits for a second person


def load_rules(session: Session, rules: Iterable[RuleDef], *, actor: str,
               add_versions: bool = True, approval_required: bool = False) -> LoadSummary:
    """Load a rule pack without ever overwriting what is installed.

    Rules whose keys are new are added; `status: active` publishes them at once into an empty
    installation (the pack is its starting point), else through approval when it is required.
    An installed rule is never re-published or retired: with `add_versions` a changed rule
    becomes a new draft version (with what changed), otherwise (`mecc seed`) it is left as is.
    Loading the same pack twice changes nothing.
    """
    who = Actor.system(actor)
    empty = session.scalar(select(func.count(Rule.key))) == 0
    summary = LoadSummary([], [], [], [], [])
    for rule in rules:
        state = session.get(Rule, rule.key)
        if state is None:
            row = _add_version(session, rule, actor=who)
            summary.added.append(rule.key)
            if rule.status == "active" and (empty or not approval_required):
                publish(session, rule.key, row.version, actor=who)
                summary.published.append(rule.key)
            elif rule.status == "active":
                open_request(session, rule.key, row.version, "publish", actor=who)
                summary.awaiting_approval.append(rule.key)
            elif rule.status == "retired":
                retire(session, rule.key, actor=who)  # nothing was live: prompts unchanged
            continue
        changes = diff_bodies(version_row(session, rule.key, state.latest_version).body,
                              rule_body(rule))
        if not add_versions or not changes:
            summary.unchanged.append(rule.key)
            continue
        row = _add_version(session, rule, actor=who)
        summary.drafted.append((rule.key, row.version, changes))
    return summary


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


def version_dict(row: RuleVersion, state: Rule | None = None,
                 pending: RuleApproval | None = None) -> dict[str, Any]:
    body: Mapping[str, Any] = row.body
    out = {**body, "organisations": organisations_of(body), "version": row.version,
           "status": row.status, "updated_by": row.updated_by,
           "updated_at": row.updated_at.isoformat().replace("+00:00", "Z")}
    if state is not None:
        out["rule_status"] = state.status
        out["active_version"] = state.active_version
        out["latest_version"] = state.latest_version
        out["pending_approval"] = ({"version": pending.version, "action": pending.action,
                                    "requested_by": pending.requested_by}
                                   if pending is not None else None)
    return out
