"""Reading events back: the event as stored, its prompts and its suppressed matches."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mecc.admin.keys import Principal
from mecc.intake.service import BatchItem
from mecc.platform.errors import NotFound, from_mecc_error_dict
from mecc.platform.runtime import Runtime
from mecc.store.models import Event, Prompt, SuppressedMatch


def iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def prompt_dict(p: Prompt) -> dict[str, Any]:
    return {
        "id": p.id, "event": p.event_id, "person_id": p.person_id,
        "organisation": p.organisation, "team": p.team, "staff_id": p.staff_id,
        "rule": {"key": p.rule_key, "version": p.rule_version},
        "topic": p.topic, "kind": p.kind, "priority": p.priority, "indicator": p.indicator,
        "summary": p.summary, "detail": p.detail, "suggestions": p.suggestions,
        "sources": p.sources, "status": p.status, "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
    }


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
            "person": payload.get("person") or {}, "facts": payload.get("facts") or {},
            "conditions": payload.get("conditions") or [],
            "preferences": payload.get("preferences") or {},
            "status": event.status, "status_reason": event.status_reason,
            "evaluated_at": iso(event.evaluated_at),
            "prompts": [prompt_dict(p) for p in prompts],
            "suppressed": [{"rule": {"key": s.rule_key, "version": s.rule_version},
                            "reason": s.reason, "code": s.reason_code} for s in suppressed],
            "links": {"self": f"/api/v1/events/{event.id}",
                      "prompts": f"/api/v1/prompts?event={event.id}"},
        }


def batch_item_dict(item: BatchItem) -> dict[str, Any]:
    out: dict[str, Any] = {"index": item.index, "status": item.status}
    if item.id:
        out["id"] = item.id
    if item.problem is not None:
        out["problem"] = from_mecc_error_dict(item.problem)
    return out
