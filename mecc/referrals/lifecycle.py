"""A referral's life: opened by a `referred` outcome, then accepted or declined by the service,
attended or not, and closed. Session-level helpers; the caller owns the transaction.

    requested -> accepted | declined | attended | did_not_attend | closed
    accepted -> declined | attended | did_not_attend | closed
    did_not_attend -> attended | closed        (a second appointment)
    attended | declined -> closed
    closed: final

A step not on this map is a conflict (409), so a late or repeated update cannot quietly
rewrite what happened.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mecc.admin.audit import record
from mecc.store.models import Prompt, PromptOutcome
from mecc.store.models import Service as ServiceRow
from mecc.store.referrals import Referral, ReferralStatusChange

STATUSES = ("requested", "accepted", "declined", "attended", "did_not_attend", "closed")
# What a service or link worker may post (`requested` is where every referral starts).
SETTABLE = STATUSES[1:]
NEXT: dict[str, tuple[str, ...]] = {
    "requested": ("accepted", "declined", "attended", "did_not_attend", "closed"),
    "accepted": ("declined", "attended", "did_not_attend", "closed"),
    "did_not_attend": ("attended", "closed"),
    "attended": ("closed",),
    "declined": ("closed",),
    "closed": (),
}
_OPEN = ("requested", "accepted", "attended", "did_not_attend")


def open_referral(session: Session, prompt: Prompt, outcome: PromptOutcome,
                  service: ServiceRow, *, actor: str, now: datetime) -> Referral:
    """The referral this `referred` outcome opens; a second `referred` to the same service
    while the first is still open returns the first rather than opening a duplicate."""
    existing = session.scalar(select(Referral).where(
        Referral.prompt_id == prompt.id, Referral.service_id == service.id,
        Referral.status.in_(_OPEN)))
    if existing is not None:
        return existing
    session.flush()  # numbers the outcome the referral points at
    referral = Referral(
        prompt_id=prompt.id, outcome_id=outcome.id, organisation=prompt.organisation,
        source=prompt.source, person_id=prompt.person_id, team=prompt.team,
        staff_id=outcome.staff_id or prompt.staff_id, topic=prompt.topic,
        rule_key=prompt.rule_key, service_id=service.id, service_name=service.name,
        service_type=service.service_type, status="requested", opened_at=now, updated_at=now)
    session.add(referral)
    session.flush()
    session.add(ReferralStatusChange(referral_id=referral.id, status="requested",
                                     recorded_at=now, recorded_by=actor))
    record(session, actor=actor, entity="referral", key=referral.id, action="opened",
           detail={"prompt": prompt.id, "service_id": service.id})
    return referral


def may_move(current: str, status: str) -> bool:
    return status in NEXT.get(current, ())


def move(session: Session, referral: Referral, status: str, *, note: str | None, actor: str,
         now: datetime) -> None:
    """Apply one allowed step (the caller has checked `may_move`)."""
    referral.status = status
    if status in ("accepted", "attended", "did_not_attend") and referral.accepted_at is None:
        referral.accepted_at = now  # an appointment offered is an acceptance
    if status in ("attended", "did_not_attend"):
        referral.attendance = status
    if status == "closed":
        referral.closed_at = now
    referral.updated_at = now
    session.add(ReferralStatusChange(referral_id=referral.id, status=status, note=note,
                                     recorded_at=now, recorded_by=actor))
    record(session, actor=actor, entity="referral", key=referral.id, action="status_changed",
           detail={"status": status})
