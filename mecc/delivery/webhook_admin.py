"""Webhook deliveries seen from the API: list them (per organisation) and re-drive one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from math import ceil
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.orm import Session

from mecc.admin.audit import record
from mecc.admin.keys import Principal
from mecc.intake.read import iso
from mecc.platform.db import utcnow
from mecc.platform.errors import Conflict, NotFound, TooManyRequests, ValidationFailed
from mecc.platform.runtime import Runtime
from mecc.prompts.service import decode_cursor, encode_cursor, scope_organisation
from mecc.store.models import AuditEntry, WebhookDelivery, WebhookEndpoint

RETRYABLE = ("pending", "failed", "disabled")
# A delivery is re-driven by hand at most once in this long: each re-drive sends at once, and
# a caller looping on it would otherwise turn us into a flood against the receiver.
MANUAL_RETRY_SECONDS = 30


def without_credentials(url: str) -> str:
    """The URL without a user:password part (intake refuses one now; an endpoint stored
    before that must not show it to every key of the organisation)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def delivery_dict(delivery: WebhookDelivery, url: str) -> dict[str, Any]:
    scheduled = delivery.status == "pending"
    return {
        "id": delivery.id, "event": delivery.event_id, "url": without_credentials(url),
        "organisation": delivery.organisation, "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": iso(delivery.next_attempt_at) if scheduled else None,
        "last_attempt_at": iso(delivery.last_attempt_at),
        "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at), "updated_at": iso(delivery.updated_at),
    }


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    created, last_id = decode_cursor(cursor)
    if created.tzinfo is None:  # not one we gave out; a naive time must not reach the query
        raise ValidationFailed("The cursor is not one this API gave out.",
                               errors={"cursor": ["Not a valid cursor."]})
    return created, last_id


def list_deliveries(runtime: Runtime, principal: Principal, args: Mapping[str, Any]
                    ) -> dict[str, Any]:
    """Newest first, within the key's organisation; filtered by status and event."""
    organisation = scope_organisation(principal, args.get("organisation"))
    query = select(WebhookDelivery, WebhookEndpoint.url).join(
        WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
    if organisation:
        query = query.where(WebhookDelivery.organisation == organisation.upper())
    if args.get("status"):
        query = query.where(WebhookDelivery.status == args["status"])
    if args.get("event") is not None:
        query = query.where(WebhookDelivery.event_id == str(args["event"]))
    if args.get("cursor"):
        created, last_id = _decode_cursor(args["cursor"])
        query = query.where(or_(WebhookDelivery.created_at < created,
                                and_(WebhookDelivery.created_at == created,
                                     WebhookDelivery.id < last_id)))
    limit = args.get("limit", 50)
    query = query.order_by(WebhookDelivery.created_at.desc(),
                           WebhookDelivery.id.desc()).limit(limit + 1)
    with runtime.db.session() as session:
        rows = list(session.execute(query))
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1][0] if rows else None
    return {"items": [delivery_dict(d, url) for d, url in rows],
            "next_cursor": encode_cursor(last.created_at, last.id) if more and last else None}


def _refuse_a_second_redrive_too_soon(session: Session, delivery_id: str,
                                      now: datetime) -> None:
    last = session.scalar(select(func.max(AuditEntry.at)).where(
        AuditEntry.entity == "webhook_delivery", AuditEntry.entity_key == delivery_id,
        AuditEntry.action == "retried"))
    if last is None:
        return
    wait = MANUAL_RETRY_SECONDS - (now - last).total_seconds()
    if wait > 0:
        session.rollback()
        raise TooManyRequests(f"This delivery was re-driven {MANUAL_RETRY_SECONDS - wait:.0f} s "
                              f"ago; it may be re-driven again in {ceil(wait)} s.",
                              retry_after=ceil(wait))


def retry_delivery(runtime: Runtime, principal: Principal, delivery_id: str) -> dict[str, Any]:
    """Make the delivery due now; a disabled endpoint is enabled again (the caller asked).

    At most once per MANUAL_RETRY_SECONDS per delivery (429 with Retry-After otherwise).
    """
    with runtime.db.session() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or not principal.may_access(delivery.organisation):
            raise NotFound("No webhook delivery with this id.")
        previous = delivery.status
        now = utcnow()
        # Conditional: a sender that claimed it meanwhile keeps it (no double send).
        # An UPDATE's result is a CursorResult (SQLAlchemy types execute() more loosely).
        changed = cast(CursorResult[Any], session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id, WebhookDelivery.status.in_(RETRYABLE))
            .values(status="pending", next_attempt_at=now, claim_token=None, updated_at=now)
            .execution_options(synchronize_session=False))).rowcount
        if not changed:
            current_status = session.scalar(select(WebhookDelivery.status).where(
                WebhookDelivery.id == delivery.id))
            raise Conflict(f"The delivery is {current_status}; only a pending, failed or disabled "
                           "delivery can be retried.")
        # Asked after the update, which holds the row: of two re-drives at once, the second
        # waits for the first to commit and then sees it here.
        _refuse_a_second_redrive_too_soon(session, delivery.id, now)
        endpoint = session.get_one(WebhookEndpoint, delivery.endpoint_id)
        re_enabled = endpoint.disabled_at is not None
        if re_enabled:
            endpoint.disabled_at = None
            endpoint.disabled_reason = None
        record(session, actor=principal.actor, entity="webhook_delivery",
               key=delivery.id, action="retried",
               detail={"previous_status": previous, "endpoint_re_enabled": re_enabled})
        session.commit()
        session.refresh(delivery)
        result = delivery_dict(delivery, endpoint.url)
    runtime.publisher.send_deliver([delivery_id])
    return result
