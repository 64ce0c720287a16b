"""Reading events back: the event as stored, its prompts and its suppressed matches; how many
are waiting to be evaluated."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.clinical.catalogue import Catalogue
from mecc.clinical.recency import contact_facts
from mecc.intake.contacts import ContactView, contacts_for, iso, latest_outcomes
from mecc.intake.service import BatchItem
from mecc.platform.db import Database
from mecc.platform.errors import NotFound, problem_details
from mecc.platform.runtime import Runtime
from mecc.store.models import Event, Prompt, SuppressedMatch

log = logging.getLogger(__name__)
UNHANDLED = frozenset({"new", "deferred"})  # statuses no outcome has been recorded for


def prompt_dict(p: Prompt, contact: ContactView | None = None,
                last_outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    """The prompt JSON. `contact` is its event as staff see it (contacts.contact_of /
    contacts_for); without one (a prompt with no event in hand) the person is named by id
    only, from the prompt's own columns."""
    if contact is None:
        contact = ContactView(person_id=p.person_id, display=None, age=None, sex=p.sex,
                              occurred_at=p.contact_at, setting=p.setting, contact_type=None)
    return {
        "id": p.id, "event": p.event_id, "source": p.source, "person_id": p.person_id,
        "person": contact.person(), "contact": contact.contact(),
        "organisation": p.organisation, "team": p.team, "staff_id": p.staff_id,
        "rule": {"key": p.rule_key, "version": p.rule_version},
        "topic": p.topic, "kind": p.kind, "priority": p.priority, "indicator": p.indicator,
        "summary": p.summary, "detail": p.detail, "suggestions": p.suggestions,
        "sources": p.sources, "evidence": p.evidence or [], "status": p.status,
        "last_outcome": last_outcome,
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
    }


def prompt_dicts(session: Session, prompts: Sequence[Prompt]) -> list[dict[str, Any]]:
    """prompt_dict for each prompt, with its person, contact and latest outcome (a query
    each for the lot, not one per prompt)."""
    contacts = contacts_for(session, (p.event_id for p in prompts))
    handled = [p.id for p in prompts if p.status not in UNHANDLED]
    outcomes = latest_outcomes(session, handled)
    return [prompt_dict(p, contacts.get(p.event_id), outcomes.get(p.id)) for p in prompts]


def ignored_facts(catalogue: Catalogue, event: Event) -> list[dict[str, str]]:
    """The facts evaluation did not use because of their dates (RULE-PACK.md, Recency): the
    same pure function evaluation calls, on the event as stored."""
    payload = event.payload
    recency, _ = contact_facts(
        occurred_at=event.occurred_at, facts=payload.get("facts") or {},
        fact_dates=payload.get("fact_dates"), conditions=payload.get("conditions") or [],
        catalogue=catalogue)
    return [item.to_dict() for item in recency.ignored]


def visible_event(session: Any, principal: Principal, event_uuid: str) -> Event:
    """The event, or 404 when it does not exist or belongs to another organisation."""
    event = session.get(Event, event_uuid)
    if event is None or not principal.may_access(event.organisation):
        raise NotFound("No event with this id.")
    return event


def event_detail(runtime: Runtime, principal: Principal, event_uuid: str) -> dict[str, Any]:
    with runtime.db.session() as session:
        event = visible_event(session, principal, event_uuid)
        prompts = session.scalars(select(Prompt).where(Prompt.event_id == event.id)
                                  .order_by(Prompt.priority.desc(), Prompt.rule_key))
        suppressed = session.scalars(select(SuppressedMatch)
                                     .where(SuppressedMatch.event_id == event.id)
                                     .order_by(SuppressedMatch.rule_key))
        payload = event.payload
        return {
            "id": event.id, "event_id": event.event_id, "source": event.source,
            "occurred_at": iso(event.occurred_at), "received_at": iso(event.received_at),
            "organisation": event.organisation, "setting": event.setting,
            "contact_type": event.contact_type, "staff": payload.get("staff") or {},
            "person": _person_as_sent(payload, event), "facts": payload.get("facts") or {},
            "conditions": payload.get("conditions") or [],
            "medications": payload.get("medications") or [],
            "fact_dates": payload.get("fact_dates") or {},
            "ignored_facts": ignored_facts(runtime.catalogue, event),
            "preferences": payload.get("preferences") or {},
            "status": event.status, "status_reason": event.status_reason,
            "evaluated_at": iso(event.evaluated_at),
            "prompts": prompt_dicts(session, list(prompts)),
            "suppressed": [{"rule": {"key": s.rule_key, "version": s.rule_version},
                            "reason": s.reason, "code": s.reason_code} for s in suppressed],
            "links": {"self": f"/api/v1/events/{event.id}",
                      "prompts": f"/api/v1/prompts?event={event.id}"},
        }


def _person_as_sent(payload: dict[str, Any], event: Event) -> dict[str, Any]:
    """The person as sent (no NHS number), with the display label while it is held."""
    person = dict(payload.get("person") or {})
    if event.person_display is not None:
        person["display"] = event.person_display
    return person


def batch_item_dict(item: BatchItem) -> dict[str, Any]:
    out: dict[str, Any] = {"index": item.index, "status": item.status}
    if item.id:
        out["id"] = item.id
    if item.problem is not None:
        out["problem"] = problem_details(item.problem)
    return out


def waiting_event_count(db: Database) -> int | None:
    """Events queued or being evaluated; None when the database cannot say (the metrics page
    answers without this gauge then: it is how an operator sees the outage)."""
    try:
        with db.session() as session:
            return session.scalar(select(func.count()).select_from(Event).where(
                Event.status.in_(("queued", "processing")))) or 0
    except SQLAlchemyError as exc:
        log.warning("queue depth unavailable", extra={"error": type(exc).__name__})
        return None
