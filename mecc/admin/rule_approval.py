"""Publishing with a second pair of eyes: publish and retire requests, approval, rejection.

With MECC_PUBLISH_APPROVAL=required a publish or retire is a request; nothing changes for
prompts until someone else (another key or user, with rules:approve) approves it. The requester
can never approve their own change. Every request, approval and rejection is in the audit log.
Callers commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from mecc.admin import rule_store
from mecc.admin.audit import record
from mecc.admin.rule_store import Actor
from mecc.platform.db import utcnow
from mecc.platform.errors import Forbidden, NotFound
from mecc.store.models import Rule, RuleApproval, RuleVersion


@dataclass(frozen=True)
class Outcome:
    """What a publish or retire did: acted at once (`request` None) or asked for approval."""

    state: Rule
    row: RuleVersion
    request: RuleApproval | None = None


def publish(session: Session, key: str, version: int, *, actor: Actor,
            approval_required: bool) -> Outcome:
    """Publish now, or (approval required) ask for it. Publishing the live version again
    changes nothing, so it needs no approval."""
    state = rule_store.rule_state(session, key)
    row = rule_store.version_row(session, key, version)
    if approval_required and state.active_version != version:
        return Outcome(state, row, rule_store.open_request(session, key, version, "publish",
                                                           actor=actor))
    row = rule_store.publish(session, key, version, actor=actor)
    return Outcome(state, row)


def retire(session: Session, key: str, *, actor: Actor, approval_required: bool) -> Outcome:
    """Retire now, or (approval required, a version is live) ask for it. A rule with nothing
    live is retired at once: no prompt changes."""
    state = rule_store.rule_state(session, key)
    if approval_required and state.active_version is not None:
        row = rule_store.version_row(session, key, state.active_version)
        return Outcome(state, row, rule_store.open_request(session, key, row.version,
                                                           "retire", actor=actor))
    state = rule_store.retire(session, key, actor=actor)
    return Outcome(state, rule_store.latest_version(session, key))


def _pending_for(session: Session, key: str, version: int) -> RuleApproval:
    rule_store.version_row(session, key, version)
    request = rule_store.pending_request(session, key)
    if request is None or request.version != version:
        raise NotFound(f"No change to version {version} of rule '{key}' is waiting for "
                       "approval.")
    return request


def approve(session: Session, key: str, version: int, *, actor: Actor) -> Outcome:
    """Carry out the pending request for `version`, by someone other than who asked."""
    request = _pending_for(session, key, version)
    if request.requester == actor.identity:
        raise Forbidden("You asked for this change: someone else with the rules:approve scope "
                        "must approve it.")
    detail = {"requested_by": request.requested_by, "approved_by": actor.label,
              "request": request.id}
    # Decided before acting, so that acting does not count it as a superseded request.
    request.status, request.decided_by, request.decided_at = "approved", actor.label, utcnow()
    record(session, actor=actor.label, entity="rule", key=key, action="approved",
           detail={"version": version, "action": request.action,
                   "requested_by": request.requested_by, "request": request.id})
    if request.action == "publish":
        row = rule_store.publish(session, key, version, actor=actor, detail=detail)
        state = rule_store.rule_state(session, key)
    else:
        state = rule_store.retire(session, key, actor=actor, detail=detail)
        row = rule_store.version_row(session, key, version)
    return Outcome(state, row, request)


def reject(session: Session, key: str, version: int, *, actor: Actor, reason: str,
           may_approve: bool) -> RuleApproval:
    """Turn the request down: the version stays a draft (or the rule stays live). A reviewer
    rejects; the requester may also withdraw their own request."""
    request = _pending_for(session, key, version)
    if not may_approve and request.requester != actor.identity:
        raise Forbidden("Only a reviewer (rules:approve) or whoever asked may reject this "
                        "request.")
    state = rule_store.rule_state(session, key)
    rule_store.check_scope(actor, "reject changes to",
                           rule_store.version_row(session, key, version).body,
                           rule_store.live_body(session, state))
    request.status, request.decided_by, request.decided_at = "rejected", actor.label, utcnow()
    request.reason = reason
    record(session, actor=actor.label, entity="rule", key=key, action="rejected",
           detail={"version": version, "action": request.action, "reason": reason,
                   "requested_by": request.requested_by, "request": request.id})
    return request


def requests(session: Session, *, status: str | None = "pending",
             key: str | None = None, limit: int = 100) -> list[RuleApproval]:
    query = select(RuleApproval).order_by(RuleApproval.id.desc()).limit(limit)
    if status:
        query = query.where(RuleApproval.status == status)
    if key:
        query = query.where(RuleApproval.key == key)
    return list(session.scalars(query))


def links(key: str, version: int) -> dict[str, str]:
    base = f"/api/v1/rules/{quote(key)}/versions/{version}"
    return {"approve": f"{base}/approve", "reject": f"{base}/reject",
            "diff": f"/api/v1/rules/{quote(key)}/diff?to={version}"}


def _time(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def request_dict(request: RuleApproval) -> dict[str, Any]:
    return {
        "id": request.id, "rule": {"key": request.key, "version": request.version},
        "action": request.action, "status": request.status,
        "requested_by": request.requested_by, "requested_at": _time(request.requested_at),
        "decided_by": request.decided_by, "decided_at": _time(request.decided_at),
        "reason": request.reason, "links": links(request.key, request.version),
    }


def pending_answer(request: RuleApproval) -> dict[str, Any]:
    """The 202 body of a publish or retire that waits for approval (CONTRACT.md)."""
    return {"status": "pending_approval", "action": request.action,
            "rule": {"key": request.key, "version": request.version},
            "requested_by": request.requested_by, "links": links(request.key, request.version)}
