"""Prompts for staff screens: listing with filters and cursors, and recording outcomes."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from mecc.admin.audit import record
from mecc.admin.keys import Principal
from mecc.delivery import push
from mecc.evaluation.pipeline import push_message
from mecc.intake.read import iso, prompt_dicts
from mecc.platform.db import utcnow
from mecc.platform.errors import NotFound, ValidationFailed
from mecc.platform.runtime import Runtime
from mecc.referrals.lifecycle import open_referral
from mecc.store.models import Prompt, PromptOutcome
from mecc.store.models import Service as ServiceRow

FILTERS = ("organisation", "team", "staff_id", "person_id", "topic", "status")


def encode_cursor(created_at: datetime, prompt_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), prompt_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, prompt_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:  # every cursor we hand out carries its zone
            raise ValueError("naive cursor time")
        return moment, str(prompt_id)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise ValidationFailed("The cursor is not one this API gave out.",
                               errors={"cursor": ["Not a valid cursor."]}) from None


def scope_organisation(principal: Principal, requested: str | None) -> str | None:
    """The organisation a query may see: a bound key sees only its own."""
    if principal.is_all_organisations:
        return requested
    if requested is not None and requested.upper() != principal.organisation:
        raise NotFound(f"No organisation {requested} visible to this key.")
    return principal.organisation


def list_prompts(runtime: Runtime, principal: Principal, args: Mapping[str, Any]
                 ) -> dict[str, Any]:
    organisation = scope_organisation(principal, args.get("organisation"))
    query = select(Prompt)
    if organisation:
        query = query.where(Prompt.organisation == organisation.upper())
    for name in FILTERS[1:]:
        if args.get(name) is not None:
            query = query.where(getattr(Prompt, name) == args[name])
    if args.get("event") is not None:
        query = query.where(Prompt.event_id == str(args["event"]))
    if args.get("since") is not None:
        query = query.where(Prompt.created_at >= args["since"])
    if args.get("cursor"):
        created, prompt_id = decode_cursor(args["cursor"])
        query = query.where(or_(Prompt.created_at < created,
                                and_(Prompt.created_at == created, Prompt.id < prompt_id)))
    limit = args.get("limit", 50)
    query = query.order_by(Prompt.created_at.desc(), Prompt.id.desc()).limit(limit + 1)
    with runtime.db.session() as session:
        rows = list(session.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        items = prompt_dicts(session, rows)
    return {"items": items,
            "next_cursor": encode_cursor(rows[-1].created_at, rows[-1].id) if more else None}


def _visible(session: Any, principal: Principal, prompt_id: str) -> Prompt:
    prompt = session.get(Prompt, prompt_id)
    if prompt is None or not principal.may_access(prompt.organisation):
        raise NotFound("No prompt with this id.")
    return prompt


def _outcome_dict(o: PromptOutcome) -> dict[str, Any]:
    return {"outcome": o.outcome, "staff_id": o.staff_id, "service_id": o.service_id,
            "note": o.note, "recorded_at": iso(o.recorded_at)}


def prompt_with_history(session: Any, prompt: Prompt) -> dict[str, Any]:
    outcomes = session.scalars(select(PromptOutcome).where(PromptOutcome.prompt_id == prompt.id)
                               .order_by(PromptOutcome.id))
    return {**prompt_dicts(session, [prompt])[0], "outcomes": [_outcome_dict(o) for o in outcomes]}


def get_prompt(runtime: Runtime, principal: Principal, prompt_id: str) -> dict[str, Any]:
    with runtime.db.session() as session:
        return prompt_with_history(session, _visible(session, principal, prompt_id))


def record_outcome(runtime: Runtime, principal: Principal, prompt_id: str,
                   body: Mapping[str, Any]) -> dict[str, Any]:
    """Append an outcome; the latest is the prompt's status (and feeds suppression)."""
    with runtime.db.session() as session:
        prompt = _visible(session, principal, prompt_id)
        service_id = body.get("service_id")
        service = session.get(ServiceRow, service_id) if service_id is not None else None
        if service_id is not None and service is None:
            raise ValidationFailed("Unknown service.",
                                   errors={"service_id": ["No service with this id."]})
        now = utcnow()
        outcome = PromptOutcome(prompt_id=prompt.id, outcome=body["outcome"],
                                staff_id=body.get("staff_id"), service_id=service_id,
                                note=body.get("note"), recorded_at=now,
                                recorded_by=principal.key_id)
        session.add(outcome)
        if body["outcome"] == "referred" and service is not None:
            # A referral to a named service is followed to its close (mecc.referrals).
            open_referral(session, prompt, outcome, service, actor=principal.actor, now=now)
        prompt.status = body["outcome"]
        prompt.updated_at = now
        record(session, actor=principal.actor, entity="prompt", key=prompt.id,
               action="outcome_recorded",
               detail={"outcome": body["outcome"], "staff_id": body.get("staff_id"),
                       "service_id": service_id})
        message = push_message("prompt-updated", prompt, now)
        push.hold_push_order(session)
        session.add(message)
        session.commit()
        result = prompt_with_history(session, prompt)
    shown = {k: v for k, v in result.items() if k != "outcomes"}  # notes stay off the stream
    push.announce(runtime, [push.message_dict(message, shown)])
    return result
