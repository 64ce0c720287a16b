"""Signed webhook deliveries (Standard Webhooks). Being implemented; see issue 6."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mecc.models import Event


def queue_delivery(session: Session, event: Event, now: datetime) -> None:
    """Queue the delivery of this event's prompts to its callback URL (caller commits)."""
    return None
