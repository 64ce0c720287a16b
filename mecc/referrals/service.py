"""Referrals over the API: list, read, move along, record the person's own outcomes.

Tenancy as for prompts: a key (or person) bound to an organisation sees and changes only its
own organisation's referrals; another organisation's referral is a 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from mecc.admin.audit import record
from mecc.admin.keys import Principal
from mecc.intake.read import iso
from mecc.platform.db import utcnow
from mecc.platform.errors import Conflict, NotFound, ValidationFailed
from mecc.platform.runtime import Runtime
from mecc.prompts.service import decode_cursor, encode_cursor, scope_organisation
from mecc.referrals import fhir
from mecc.referrals.lifecycle import NEXT, may_move, move
from mecc.store.referrals import (
    PERSONAL_OUTCOME_ITEMS,
    PersonalOutcome,
    Referral,
    ReferralStatusChange,
)

# A personal-outcome record may be dated a little ahead (clock drift), never later.
FUTURE_TOLERANCE = timedelta(minutes=5)


def referral_dict(r: Referral) -> dict[str, Any]:
    base = f"/api/v1/referrals/{r.id}"
    return {
        "id": r.id, "prompt": r.prompt_id, "organisation": r.organisation,
        "person_id": r.person_id, "team": r.team, "staff_id": r.staff_id, "topic": r.topic,
        "rule": {"key": r.rule_key},
        "service": {"id": r.service_id, "name": r.service_name,
                    "service_type": r.service_type},
        "status": r.status, "attendance": r.attendance, "next_statuses": list(NEXT[r.status]),
        "opened_at": iso(r.opened_at), "accepted_at": iso(r.accepted_at),
        "closed_at": iso(r.closed_at), "updated_at": iso(r.updated_at),
        "links": {"self": base, "fhir": f"{base}/fhir", "status": f"{base}/status",
                  "personal_outcomes": f"{base}/personal-outcomes",
                  "prompt": f"/api/v1/prompts/{r.prompt_id}"},
    }


def personal_outcome_dict(p: PersonalOutcome) -> dict[str, Any]:
    return {"recorded_at": iso(p.recorded_at), "recorded_by": p.recorded_by,
            "scores": {item: getattr(p, item) for item in PERSONAL_OUTCOME_ITEMS
                       if getattr(p, item) is not None}}


def _history(session: Session, referral: Referral) -> dict[str, Any]:
    changes = session.scalars(select(ReferralStatusChange)
                              .where(ReferralStatusChange.referral_id == referral.id)
                              .order_by(ReferralStatusChange.id))
    outcomes = session.scalars(select(PersonalOutcome)
                               .where(PersonalOutcome.referral_id == referral.id)
                               .order_by(PersonalOutcome.recorded_at, PersonalOutcome.id))
    return {
        **referral_dict(referral),
        "history": [{"status": c.status, "note": c.note, "recorded_at": iso(c.recorded_at),
                     "recorded_by": c.recorded_by} for c in changes],
        "personal_outcomes": [personal_outcome_dict(p) for p in outcomes],
    }


def _visible(session: Session, principal: Principal, referral_id: str) -> Referral:
    referral = session.get(Referral, referral_id)
    if referral is None or not principal.may_access(referral.organisation):
        raise NotFound("No referral with this id.")
    return referral


def list_referrals(runtime: Runtime, principal: Principal, args: Mapping[str, Any]
                   ) -> dict[str, Any]:
    """Referrals, newest first, filtered by status, service, opening time, prompt, person."""
    organisation = scope_organisation(principal, args.get("organisation"))
    query = select(Referral)
    if organisation:
        query = query.where(Referral.organisation == organisation.upper())
    for name, column in (("status", Referral.status), ("service", Referral.service_id),
                         ("person_id", Referral.person_id)):
        if args.get(name) is not None:
            query = query.where(column == args[name])
    if args.get("prompt") is not None:
        query = query.where(Referral.prompt_id == str(args["prompt"]))
    if args.get("from_") is not None:
        query = query.where(Referral.opened_at >= args["from_"])
    if args.get("to") is not None:
        query = query.where(Referral.opened_at < args["to"])
    if args.get("cursor"):
        opened, referral_id = decode_cursor(args["cursor"])
        query = query.where(or_(Referral.opened_at < opened,
                                and_(Referral.opened_at == opened, Referral.id < referral_id)))
    limit = args.get("limit", 50)
    query = query.order_by(Referral.opened_at.desc(), Referral.id.desc()).limit(limit + 1)
    with runtime.db.session() as session:
        rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [referral_dict(r) for r in rows],
            "next_cursor": encode_cursor(rows[-1].opened_at, rows[-1].id) if more else None}


def get_referral(runtime: Runtime, principal: Principal, referral_id: str) -> dict[str, Any]:
    with runtime.db.session() as session:
        return _history(session, _visible(session, principal, referral_id))


def referral_fhir(runtime: Runtime, principal: Principal, referral_id: str) -> dict[str, Any]:
    """The referral as a FHIR R4 Bundle: a ServiceRequest and the Task that follows it."""
    with runtime.db.session() as session:
        referral = _visible(session, principal, referral_id)
        latest = session.scalar(select(PersonalOutcome)
                                .where(PersonalOutcome.referral_id == referral.id)
                                .order_by(PersonalOutcome.recorded_at.desc(),
                                          PersonalOutcome.id.desc()).limit(1))
        return fhir.referral_bundle(referral, latest, now=utcnow())


def change_status(runtime: Runtime, principal: Principal, referral_id: str,
                  body: Mapping[str, Any]) -> dict[str, Any]:
    """Move a referral one step along its life (409 for a step that is not allowed)."""
    status = body["status"]
    with runtime.db.session() as session:
        referral = _visible(session, principal, referral_id)
        if not may_move(referral.status, status):
            allowed = NEXT[referral.status]
            raise Conflict(
                f"A referral that is '{referral.status}' cannot become '{status}'; "
                + (f"it may become: {', '.join(allowed)}." if allowed else "it is closed."))
        move(session, referral, status, note=body.get("note"), actor=principal.actor,
             now=utcnow())
        session.commit()
        return _history(session, referral)


def record_personal_outcomes(runtime: Runtime, principal: Principal, referral_id: str,
                             body: Mapping[str, Any]) -> dict[str, Any]:
    """Store the person's own scores (1-5) at `recorded_at`; unanswered items are left out."""
    recorded_at: datetime = body["recorded_at"]
    now = utcnow()
    if recorded_at > now + FUTURE_TOLERANCE:
        raise ValidationFailed("'recorded_at' is in the future.", errors={
            "recorded_at": ["Must not be in the future."]})
    scores = body["scores"]
    with runtime.db.session() as session:
        referral = _visible(session, principal, referral_id)
        session.add(PersonalOutcome(referral_id=referral.id, recorded_at=recorded_at,
                                    recorded_by=principal.actor, **scores))
        referral.updated_at = now
        # The scores are the person's own words about their health: ids only in the audit.
        record(session, actor=principal.actor, entity="referral", key=referral.id,
               action="personal_outcomes_recorded", detail={"items": sorted(scores)})
        session.commit()
        return _history(session, referral)
