"""The append-only audit log: who did what, when."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mecc.store.models import AuditEntry

# What the log records changes to (GET /api/v1/audit filters by these; a test keeps the list
# complete).
ENTITIES = ("rule", "key", "prompt", "service", "referral", "user", "cds_client",
            "webhook_delivery")


def record(session: Session, *, actor: str, entity: str, key: str, action: str,
           detail: dict[str, Any] | None = None) -> None:
    """Add an entry in the caller's transaction: it commits with the change it describes."""
    session.add(AuditEntry(actor=actor, entity=entity, entity_key=key, action=action,
                           detail=detail or {}))
