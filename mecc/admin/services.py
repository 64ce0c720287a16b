"""The services directory in the database, loaded from config/services/ and edited by admins."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mecc.admin.audit import record
from mecc.clinical.directory import service_to_dict
from mecc.clinical.domain import Service
from mecc.platform.db import utcnow
from mecc.store.models import Service as ServiceRow


def to_domain(row: ServiceRow) -> Service:
    return Service(id=row.id, name=row.name, service_type=row.service_type,
                   areas=frozenset(row.areas or ()), organisations=frozenset(row.organisations
                                                                             or ()),
                   self_referral=row.self_referral, contact=dict(row.contact or {}),
                   referral_url=row.referral_url, description=row.description or "")


def upsert_services(session: Session, services: Iterable[Service], *, actor: str) -> int:
    """Insert or update services by id (caller commits); returns how many changed."""
    changed = 0
    for service in services:
        data = service_to_dict(service)
        row = session.get(ServiceRow, service.id)
        values = {"name": service.name, "service_type": service.service_type,
                  "areas": sorted(service.areas), "organisations": sorted(service.organisations),
                  "self_referral": service.self_referral, "contact": dict(service.contact),
                  "referral_url": service.referral_url, "description": service.description}
        if row is None:
            session.add(ServiceRow(id=service.id, updated_at=utcnow(), **values))
        elif any(getattr(row, k) != v for k, v in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
        else:
            continue
        changed += 1
        record(session, actor=actor, entity="service", key=service.id, action="upserted",
               detail=data)
    return changed


def revision(session: Session) -> tuple[int, datetime | None]:
    count, latest = session.execute(
        select(func.count(ServiceRow.id), func.max(ServiceRow.updated_at))).one()
    return int(count), latest


class ServiceCache:
    """All services, re-read only when the directory changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revision: tuple[int, datetime | None] | None = None
        self._services: list[Service] = []

    def get(self, session: Session) -> list[Service]:
        current = revision(session)
        if current != self._revision:
            with self._lock:
                rows = session.scalars(select(ServiceRow).order_by(ServiceRow.id))
                self._services = [to_domain(r) for r in rows]
                self._revision = current
        return self._services
