"""Accepting contact events: validate, authorise, store with their queue state, then enqueue.

One transaction writes the event as `queued`; the answer is given only after it commits; the
evaluation task is sent after the commit. A broker that is down delays evaluation (the relay
re-sends) but never loses an accepted event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import marshmallow as ma
from sqlalchemy import insert, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.intake.display import label_to_keep
from mecc.intake.pseudonym import body_fingerprint, person_key
from mecc.platform.db import utcnow
from mecc.platform.errors import (
    Conflict,
    Forbidden,
    MeccError,
    ValidationFailed,
    describe,
    flatten_errors,
)
from mecc.platform.fields import unsafe_values
from mecc.platform.observability import EVENTS_ACCEPTED, EVENTS_DUPLICATE, EVENTS_REJECTED
from mecc.platform.runtime import Runtime
from mecc.store.models import Event, new_id

# A freshly accepted event is sent at once; the relay only re-sends it if it is still queued
# this long after acceptance (so the happy path costs no second write).
RELAY_GRACE = timedelta(seconds=10)
BATCH_LIMIT = 500
SEND_CHUNK = 100


@dataclass(frozen=True)
class Accepted:
    id: str
    event_id: str
    source: str
    status: str
    created: bool  # False: a duplicate of an earlier submission

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "event_id": self.event_id, "source": self.source,
            "status": self.status,
            "links": {"self": f"/api/v1/events/{self.id}",
                      "prompts": f"/api/v1/prompts?event={self.id}"},
        }


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    if type(value) in _PLAIN:  # most values: answered before the slower isinstance checks
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def validate_event(runtime: Runtime, body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise ValidationFailed("The event must be a JSON object.",
                               errors={"body": ["Must be a JSON object."]})
    # Text the database cannot store, anywhere in the event (free text in conditions.display,
    # a key in fact_dates): a 422 for this event alone, never a failed batch.
    unsafe = unsafe_values(body)
    if unsafe:
        raise ValidationFailed(describe(unsafe), errors=unsafe)
    try:
        # One schema instance per process (Runtime.event_loader), reused for every event and
        # thread: load() does not change it.
        data: dict[str, Any] = runtime.event_loader.load(body)
    except ma.ValidationError as exc:
        errors = flatten_errors(exc.messages)
        raise ValidationFailed(describe(errors), errors=errors) from None
    return data


def authorise_event(principal: Principal, data: Mapping[str, Any]) -> None:
    if not principal.may_access(data["organisation"]):
        raise Forbidden(f"This API key may not send events for organisation "
                        f"{data['organisation']}.")
    url = data.get("callback_url")
    if url:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        # IPv6 literals are allow-listed as [::1] or [::1]:8080, and urlsplit drops brackets.
        shown = f"[{host}]" if ":" in host else host
        with_port = f"{shown}:{parts.port}" if parts.port else shown
        allowed = {h.lower() for h in principal.callback_hosts}
        if not allowed & {host, shown, with_port}:
            message = (f"Host '{with_port}' is not on this API key's callback allow-list; "
                       "an administrator adds it with --callback-host.")
            raise ValidationFailed(message, errors={"callback_url": [message]})


def build_row(runtime: Runtime, principal: Principal, body: Mapping[str, Any],
              data: dict[str, Any]) -> Event:
    person = dict(data["person"])
    nhs_number = person.pop("nhs_number", None)
    # The display label is held in its own column only, so erasing it leaves no copy behind.
    display = person.pop("display", None)
    staff = data.get("staff") or {}
    payload = jsonable({**data, "person": person})
    now = utcnow()
    return Event(
        id=new_id(), source=data["source"], event_id=data["event_id"],
        body_hash=body_fingerprint(body, runtime.settings.pseudonym_key),
        organisation=data["organisation"], setting=data["setting"],
        contact_type=data.get("contact_type"), staff_id=staff.get("id"),
        staff_role=staff.get("role"), team=staff.get("team"), person_id=person["id"],
        person_display=label_to_keep(runtime.settings, display, data["occurred_at"], now),
        person_key=person_key(nhs_number, runtime.settings.pseudonym_key) if nhs_number
        else None,
        occurred_at=data["occurred_at"], received_at=now, payload=payload,
        callback_url=data.get("callback_url") or principal.default_callback_url,
        api_key_id=principal.api_key_id, status="queued", next_attempt_at=now + RELAY_GRACE,
    )


IdempotencyKey = tuple[str, str, str]  # (organisation, source, event_id), unique


def idempotency_key(row: Event) -> IdempotencyKey:
    return (row.organisation, row.source, row.event_id)


def _existing(session: Session, keys: Sequence[IdempotencyKey]) -> dict[IdempotencyKey, Event]:
    """Stored events under these keys. Only the organisation's own are looked at: another
    organisation's ids neither collide with nor reveal anything about this one's."""
    # One `organisation = ? AND source = ? AND event_id IN (...)` per (organisation, source)
    # rather than a row-value IN: a batch nearly always has one of each, and this form is
    # several times cheaper to run (bench/ingest.py).
    grouped: dict[tuple[str, str], list[str]] = {}
    for organisation, source, event_id in keys:
        grouped.setdefault((organisation, source), []).append(event_id)
    found: dict[IdempotencyKey, Event] = {}
    for (organisation, source), event_ids in grouped.items():
        rows = session.scalars(select(Event).where(Event.organisation == organisation,
                                                   Event.source == source,
                                                   Event.event_id.in_(event_ids)))
        found.update((idempotency_key(r), r) for r in rows)
    return found


def _column_values(row: Event) -> dict[str, Any]:
    """The values set on a new, unsaved row (column defaults fill the rest on insert)."""
    state = inspect(row).dict
    return {c.key: state[c.key] for c in Event.__table__.columns if c.key in state}


def _answer_duplicate(existing: Event, row: Event) -> Accepted:
    if existing.body_hash != row.body_hash:
        raise Conflict(f"Event '{row.event_id}' from '{row.source}' was already accepted with a "
                       "different body; send a new event_id for a new contact.")
    return Accepted(existing.id, existing.event_id, existing.source, existing.status, False)


_REJECTION_REASONS = ((ValidationFailed, "validation"), (Forbidden, "forbidden"),
                      (Conflict, "conflict"))


def count_rejection(exc: MeccError) -> None:
    reason = next((r for kind, r in _REJECTION_REASONS if isinstance(exc, kind)), "other")
    EVENTS_REJECTED.labels(reason).inc()


def accept_event(runtime: Runtime, principal: Principal, body: Any) -> Accepted:
    """Validate, authorise, store and enqueue one event (idempotent on organisation, source
    and event_id)."""
    try:
        accepted = _accept_event(runtime, principal, body)
    except MeccError as exc:
        count_rejection(exc)
        raise
    if accepted.created:
        EVENTS_ACCEPTED.labels("single").inc()
    else:
        EVENTS_DUPLICATE.inc()
    return accepted


def _accept_event(runtime: Runtime, principal: Principal, body: Any) -> Accepted:
    data = validate_event(runtime, body)
    authorise_event(principal, data)
    row = build_row(runtime, principal, body, data)
    with runtime.db.session() as session:
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            # Unique (organisation, source, event_id): a concurrent or earlier duplicate won.
            session.rollback()
            existing = _existing(session, [idempotency_key(row)])
            if not existing:
                raise
            return _answer_duplicate(next(iter(existing.values())), row)
    runtime.publisher.send_evaluate([row.id])
    return Accepted(row.id, row.event_id, row.source, row.status, True)


@dataclass(frozen=True)
class BatchItem:
    index: int
    status: str  # accepted | duplicate | rejected
    id: str | None = None
    problem: MeccError | None = None


def accept_batch(runtime: Runtime, principal: Principal, items: Sequence[Any]) -> list[BatchItem]:
    """Each item on its own merits: one bad item never fails the batch."""
    results: dict[int, BatchItem] = {}
    rows: dict[int, Event] = {}
    seen: dict[IdempotencyKey, int] = {}
    for index, body in enumerate(items):
        try:
            data = validate_event(runtime, body)
            authorise_event(principal, data)
            row = build_row(runtime, principal, body, data)
        except MeccError as exc:
            results[index] = BatchItem(index, "rejected", problem=exc)
            continue
        key = idempotency_key(row)
        if key in seen:  # the same event twice in one batch
            first = rows[seen[key]]
            try:
                _answer_duplicate(first, row)
                results[index] = BatchItem(index, "duplicate", id=first.id)
            except Conflict as exc:
                results[index] = BatchItem(index, "rejected", problem=exc)
            continue
        seen[key] = index
        rows[index] = row

    created: list[str] = []
    with runtime.db.session() as session:
        existing = _existing(session, list(seen))
        fresh = {}
        for index, row in rows.items():
            prior = existing.get(idempotency_key(row))
            if prior is None:
                fresh[index] = row
                continue
            try:
                results[index] = BatchItem(index, "duplicate", id=_answer_duplicate(prior, row).id)
            except Conflict as exc:
                results[index] = BatchItem(index, "rejected", problem=exc)
        try:
            if fresh:
                # One multi-row Core INSERT: the ORM's unit of work cost more per event than
                # everything else in a batch but validation (bench/ingest.py).
                session.execute(insert(Event), [_column_values(row) for row in fresh.values()])
            session.commit()
            created = [row.id for row in fresh.values()]
            for index, row in fresh.items():
                results[index] = BatchItem(index, "accepted", id=row.id)
        except IntegrityError:
            # A concurrent submission raced us: fall back to one savepoint per event.
            session.rollback()
            for index, row in fresh.items():
                try:
                    with session.begin_nested():
                        session.add(row)
                    results[index] = BatchItem(index, "accepted", id=row.id)
                    created.append(row.id)
                except IntegrityError:
                    stored = _existing(session, [idempotency_key(row)])
                    try:
                        dup = _answer_duplicate(next(iter(stored.values())), row)
                        results[index] = BatchItem(index, "duplicate", id=dup.id)
                    except Conflict as exc:
                        results[index] = BatchItem(index, "rejected", problem=exc)
            session.commit()
    for start in range(0, len(created), SEND_CHUNK):
        runtime.publisher.send_evaluate(created[start:start + SEND_CHUNK])
    answered = [results[i] for i in range(len(items))]
    for item in answered:
        if item.status == "accepted":
            EVENTS_ACCEPTED.labels("batch").inc()
        elif item.status == "duplicate":
            EVENTS_DUPLICATE.inc()
        elif item.problem is not None:
            count_rejection(item.problem)
    return answered
