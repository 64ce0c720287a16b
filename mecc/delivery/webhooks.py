"""Webhook deliveries (Standard Webhooks): queue with the prompts, claim, sign, send, reschedule.

The database is the record, as for events:
- a delivery row is written in the transaction that stores the event's prompts, unique per
  (event, endpoint), so a redelivered evaluation queues nothing new;
- a sender *claims* a due delivery with a conditional update and a fresh claim token (FOR
  UPDATE SKIP LOCKED on PostgreSQL); the claim is a lease, so a sender that dies mid-send
  leaves a delivery that is claimed again once the lease runs out;
- the result is written only while the claim token is still ours;
- no transaction is held open while the HTTP request is in flight.

Retries follow mecc.delivery.webhook_schedule: exponential backoff with full jitter (5 s
doubling, at most 1 h per step), for as long as the delivery is younger than 24 h; the first
failure after that parks it as `failed`. The window counts from the delivery's creation, so a
manual retry of a parked delivery makes one attempt (and parks it again if that fails). 410
Gone disables the endpoint: that delivery and every pending one to the endpoint become
`disabled`, and later ones start `disabled`.
Policy refusals (host not allow-listed, address not public, key revoked) park the delivery as
`failed` at once: retrying cannot help until an administrator changes the key, and
POST /webhook-deliveries/<id>/retry re-drives it then.

MECC_WEBHOOK_BASE_DELAY_SECONDS (Settings.webhook_base_delay_seconds: whole seconds, 1-3600,
default 5) replaces the 5 s the backoff starts from. It exists so that the fault suite
(bench/faults.py, scenario f) can watch a receiver fail and recover within a minute; production
leaves it unset. The 24 h window and the 1 h step ceiling do not change with it.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from mecc.delivery import webhook_client as client
from mecc.delivery.webhook_schedule import (
    BASE_DELAY,
    RETRY_WINDOW,
    Rand,
    jitter,
    next_attempt_at,
)
from mecc.intake.contacts import contact_of
from mecc.intake.read import iso, prompt_dict
from mecc.platform.db import utcnow
from mecc.platform.observability import WEBHOOK_FAILURES
from mecc.platform.runtime import Runtime
from mecc.store.models import ApiKey, Event, Prompt, PushMessage, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

EVENT_TYPE = "prompts.created"
STATUSES = ("pending", "delivering", "succeeded", "failed", "disabled")
# A claim's lease; the task passes its hard time limit plus a margin, so a live sender is
# never overtaken.
LEASE = timedelta(seconds=90)
# After its first attempt, one run stops claiming when it could not finish one more within
# this many seconds (the task passes its soft time limit); what is left stays due.
RUN_BUDGET = 40.0
MAX_PER_RUN = 200
TIMEOUTS = client.Timeouts()  # connect 3 s, 10 s in all


# ------------------------------------------------------------------------------ queueing
def _insert_ignoring_duplicates(session: Session, model: type[Any], values: dict[str, Any],
                                keys: list[str]) -> None:
    # INSERT ... ON CONFLICT DO NOTHING: a concurrent or repeated insert is simply skipped,
    # without failing the evaluation transaction it runs in.
    insert: Any = (postgresql.insert if session.get_bind().dialect.name == "postgresql"
                   else sqlite.insert)
    session.execute(insert(model).values(**values).on_conflict_do_nothing(index_elements=keys))


def queue_delivery(session: Session, event: Event, now: datetime) -> str | None:
    """Queue this event's prompts for its callback URL (caller commits); the delivery id."""
    if not event.callback_url or event.api_key_id is None:
        return None
    _insert_ignoring_duplicates(session, WebhookEndpoint, {
        "id": str(uuid.uuid4()), "api_key_id": event.api_key_id, "url": event.callback_url,
        "created_at": now}, ["api_key_id", "url"])
    endpoint = session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.api_key_id == event.api_key_id,
        WebhookEndpoint.url == event.callback_url)).one()
    disabled = endpoint.disabled_at is not None
    _insert_ignoring_duplicates(session, WebhookDelivery, {
        "id": str(uuid.uuid4()), "event_id": event.id, "endpoint_id": endpoint.id,
        "organisation": event.organisation, "status": "disabled" if disabled else "pending",
        "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now,
        "last_error": "the endpoint is disabled (it answered 410 Gone)" if disabled else None,
    }, ["event_id", "endpoint_id"])
    return session.scalar(select(WebhookDelivery.id).where(
        WebhookDelivery.event_id == event.id, WebhookDelivery.endpoint_id == endpoint.id))


def pending_for_events(session: Session, event_ids: Sequence[str]) -> list[str]:
    """The deliveries of these events still to send (to hand to a sender after commit)."""
    if not event_ids:
        return []
    return list(session.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.event_id.in_(list(event_ids)), WebhookDelivery.status == "pending")))


# ------------------------------------------------------------------------------ claiming
def _due(now: datetime) -> Any:
    return and_(WebhookDelivery.status.in_(("pending", "delivering")),
                WebhookDelivery.next_attempt_at <= now)


def park_abandoned(session: Session, now: datetime) -> int:
    """Deliveries whose sender died past the retry window are failed, not retried forever."""
    # An UPDATE's result is a CursorResult (SQLAlchemy types execute() more loosely).
    return cast(CursorResult[Any], session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == "delivering", WebhookDelivery.next_attempt_at <= now,
               WebhookDelivery.created_at <= now - RETRY_WINDOW)
        .values(status="failed", claim_token=None, updated_at=now,
                last_error="the last attempt did not complete (sender lost); gave up")
        .execution_options(synchronize_session=False))).rowcount


def claim_due(session: Session, *, now: datetime, ids: Sequence[str] | None = None,
              limit: int = 1, lease: timedelta = LEASE) -> tuple[str, list[WebhookDelivery]]:
    """Claim due deliveries, oldest due first (caller commits).

    PostgreSQL picks rows with FOR UPDATE SKIP LOCKED, so concurrent senders take different
    ones. SQLite claims in one conditional UPDATE as the transaction's first statement: a read
    first would make the write lock an upgrade, which fails at once if another sender committed
    in between.
    """
    due = select(WebhookDelivery.id).where(_due(now)).order_by(
        WebhookDelivery.next_attempt_at).limit(limit)
    if ids is not None:
        due = due.where(WebhookDelivery.id.in_(list(ids)))
    token = str(uuid.uuid4())
    if session.get_bind().dialect.name == "postgresql":
        picked: Any = list(session.scalars(due.with_for_update(skip_locked=True)))
        if not picked:
            return token, []
    else:
        picked = due
    session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id.in_(picked), _due(now))
        .values(status="delivering", claim_token=token, next_attempt_at=now + lease,
                attempts=WebhookDelivery.attempts + 1, last_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False))
    rows = list(session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.claim_token == token)))
    return token, rows


# ------------------------------------------------------------------------------ sending
@dataclass(frozen=True)
class Request:
    url: str
    allow_list: tuple[str, ...]
    secret: str = field(repr=False)
    body: bytes = field(repr=False)
    revoked: bool = False
    endpoint_disabled: bool = False


def payload(event: Event, prompts: Sequence[Prompt]) -> dict[str, Any]:
    """The prompts of one event, for that event's own callback: the person as this event
    named them (its display label while held), never another source's label for them."""
    contact = contact_of(event)
    return {"type": EVENT_TYPE, "timestamp": iso(event.evaluated_at or event.received_at),
            "data": {"event": {"id": event.id, "event_id": event.event_id,
                               "source": event.source},
                     "prompts": [prompt_dict(p, contact) for p in prompts
                                 if p.event_id == event.id]}}


def build_request(session: Session, delivery: WebhookDelivery) -> Request:
    endpoint = session.get_one(WebhookEndpoint, delivery.endpoint_id)
    event = session.get_one(Event, delivery.event_id)
    key = session.get(ApiKey, endpoint.api_key_id) if endpoint.api_key_id else None
    # The shown prompts: those pushed to screens when they were created (not deferred).
    shown = session.scalars(
        select(Prompt).where(Prompt.event_id == event.id, Prompt.id.in_(
            select(PushMessage.prompt_id).where(PushMessage.kind == "prompt")))
        .order_by(Prompt.priority.desc(), Prompt.rule_key))
    body = json.dumps(payload(event, list(shown)), separators=(",", ":"),
                      ensure_ascii=False).encode()
    return Request(url=endpoint.url, allow_list=tuple(key.callback_hosts or ()) if key else (),
                   secret=key.webhook_secret if key else "", body=body,
                   revoked=key is None or key.revoked_at is not None,
                   endpoint_disabled=endpoint.disabled_at is not None)


def sign(secret: str, message_id: str, body: bytes, at: float | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for this body (the attempt's own timestamp)."""
    stamp = datetime.fromtimestamp(int(time.time() if at is None else at), UTC)
    signature = Webhook(secret).sign(message_id, stamp, body.decode())
    return {"webhook-id": message_id, "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": signature, "Content-Type": "application/json"}


@dataclass(frozen=True)
class Outcome:
    kind: str  # succeeded | retry | refused | gone | disabled
    status_code: int | None = None
    error: str | None = None
    reason: str | None = None
    retry_after: float | None = None


def attempt(request: Request, delivery_id: str, *, timeouts: client.Timeouts,
            resolver: client.Resolver) -> Outcome:
    """Check the policy, then POST once."""
    if request.endpoint_disabled:
        return Outcome("disabled", error="the endpoint is disabled (it answered 410 Gone)")
    if request.revoked:
        return Outcome("refused", error="the API key was revoked", reason="refused")
    try:
        target = client.resolve_target(request.url, request.allow_list, resolver=resolver)
    except client.Refused as exc:
        return Outcome("refused", error=f"refused: {exc}", reason="refused")
    except client.Unresolvable as exc:
        return Outcome("retry", error=str(exc), reason="dns")
    answer = client.post(target, request.body, sign(request.secret, delivery_id, request.body),
                         timeouts)
    if answer.ok:
        return Outcome("succeeded", status_code=answer.status_code)
    if answer.status_code == 410:
        return Outcome("gone", status_code=410, error="410 Gone: the endpoint is disabled",
                       reason="gone")
    if answer.status_code is not None:
        redirect = 300 <= answer.status_code < 400
        return Outcome("retry", status_code=answer.status_code,
                       error=(f"HTTP {answer.status_code}" +
                              (" (redirects are not followed)" if redirect else "")),
                       reason="redirect" if redirect else "status",
                       retry_after=answer.retry_after)
    return Outcome("retry", error=answer.error, reason=answer.reason)


def record(session: Session, delivery: WebhookDelivery, token: str, outcome: Outcome, *,
           now: datetime, rand: Rand, base_delay: float = BASE_DELAY) -> str | None:
    """Write the attempt's result while the claim is still ours (caller commits)."""
    values: dict[str, Any] = {"claim_token": None, "updated_at": now,
                              "last_status_code": outcome.status_code,
                              "last_error": outcome.error}
    if outcome.kind == "succeeded":
        values.update(status="succeeded", last_error=None)
    elif outcome.kind in ("gone", "disabled"):
        values["status"] = "disabled"
    elif outcome.kind == "refused":
        values["status"] = "failed"
    else:
        when = next_attempt_at(failures=delivery.attempts, created_at=delivery.created_at,
                               now=now, rand=rand, retry_after=outcome.retry_after,
                               base_delay=base_delay)
        if when is None:
            values.update(status="failed", last_error=f"{outcome.error}; gave up after "
                          f"{delivery.attempts} attempts over {RETRY_WINDOW}")
        else:
            values.update(status="pending", next_attempt_at=when)
    changed = cast(CursorResult[Any], session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery.id,
                                      WebhookDelivery.claim_token == token)
        .values(**values).execution_options(synchronize_session=False))).rowcount
    if not changed:
        return None  # our lease ran out and another sender owns it now
    if outcome.kind == "gone":
        session.execute(update(WebhookEndpoint).where(
            WebhookEndpoint.id == delivery.endpoint_id)
            .values(disabled_at=now, disabled_reason="answered 410 Gone")
            .execution_options(synchronize_session=False))
        session.execute(update(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == delivery.endpoint_id,
            WebhookDelivery.status == "pending")
            .values(status="disabled", updated_at=now,
                    last_error="the endpoint is disabled (it answered 410 Gone)")
            .execution_options(synchronize_session=False))
    return str(values["status"])


@dataclass
class RunSummary:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1


def deliver_due(runtime: Runtime, delivery_ids: Sequence[str] | None = None, *,
                now: datetime | None = None, timeouts: client.Timeouts = TIMEOUTS,
                rand: Rand = jitter, resolver: client.Resolver = socket.getaddrinfo,
                budget: float = RUN_BUDGET, lease: timedelta = LEASE) -> RunSummary:
    """Send these deliveries (or every due one), one claim at a time, within the budget.

    `now` stands in for the clock in scheduling (tests); signatures always use the real time.
    """
    started = time.monotonic()
    summary = RunSummary()
    with runtime.db.session() as session:
        parked = park_abandoned(session, now or utcnow())
        session.commit()
    if parked:
        summary.counts["abandoned"] = parked
    for n in range(MAX_PER_RUN):
        if n and time.monotonic() - started + timeouts.total > budget:
            break
        with runtime.db.session() as session:
            token, rows = claim_due(session, now=now or utcnow(), ids=delivery_ids,
                                    lease=lease)
            session.commit()
            if not rows:
                break
            delivery = rows[0]
            request = build_request(session, delivery)
        outcome = attempt(request, delivery.id, timeouts=timeouts, resolver=resolver)
        with runtime.db.session() as session:
            status = record(session, delivery, token, outcome, now=now or utcnow(), rand=rand,
                            base_delay=float(runtime.settings.webhook_base_delay_seconds))
            session.commit()
        if outcome.reason:
            WEBHOOK_FAILURES.labels(outcome.reason).inc()
        log.info("webhook attempt", extra={
            "delivery": delivery.id, "attempt": delivery.attempts, "outcome": outcome.kind,
            "status_code": outcome.status_code, "error": outcome.error, "status": status})
        summary.add(status or "lost_claim")
    return summary
