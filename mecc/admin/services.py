"""The services directory in the database, loaded from config/services/ and edited by admins."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mecc.admin.audit import record
from mecc.clinical.directory import service_to_dict
from mecc.clinical.domain import Service
from mecc.platform.db import Database, utcnow
from mecc.platform.errors import Conflict, NotFound
from mecc.store.models import Service as ServiceRow


def to_domain(row: ServiceRow) -> Service:
    return Service(id=row.id, name=row.name, service_type=row.service_type,
                   areas=frozenset(row.areas or ()), organisations=frozenset(row.organisations
                                                                             or ()),
                   self_referral=row.self_referral, contact=dict(row.contact or {}),
                   referral_url=row.referral_url, description=row.description or "")


def _values(service: Service) -> dict[str, Any]:
    return {"name": service.name, "service_type": service.service_type,
            "areas": sorted(service.areas), "organisations": sorted(service.organisations),
            "self_referral": service.self_referral, "contact": dict(service.contact),
            "referral_url": service.referral_url, "description": service.description}


def differences(row: ServiceRow, service: Service) -> dict[str, tuple[Any, Any]]:
    """Field -> (installed, given) for each field where `service` differs from the row."""
    return {name: (getattr(row, name), value) for name, value in _values(service).items()
            if getattr(row, name) != value}


def upsert_services(session: Session, services: Iterable[Service], *, actor: str) -> int:
    """Insert or update services by id (caller commits); returns how many changed."""
    changed = 0
    for service in services:
        row = session.get(ServiceRow, service.id)
        values = _values(service)
        if row is None:
            session.add(ServiceRow(id=service.id, updated_at=utcnow(), **values))
        elif differences(row, service):
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
        else:
            continue
        changed += 1
        record(session, actor=actor, entity="service", key=service.id, action="upserted",
               detail=service_to_dict(service))
    return changed


@dataclass(frozen=True)
class ServiceLoad:
    added: list[str]
    replaced: list[str]
    unchanged: list[str]
    # Installed services the file describes differently, left as they are (no `replace`).
    kept: list[tuple[str, dict[str, tuple[Any, Any]]]]


def load_services(session: Session, services: Iterable[Service], *, actor: str,
                  replace: bool = False) -> ServiceLoad:
    """Add services whose ids are new; an installed service is replaced only when asked
    (`mecc services load --replace`), so an administrator's edit survives `mecc seed`."""
    summary = ServiceLoad([], [], [], [])
    for service in services:
        row = session.get(ServiceRow, service.id)
        changes = differences(row, service) if row is not None else {}
        if row is not None and not changes:
            summary.unchanged.append(service.id)
        elif row is not None and not replace:
            summary.kept.append((service.id, changes))
        else:
            upsert_services(session, [service], actor=actor)
            (summary.added if row is None else summary.replaced).append(service.id)
    return summary


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


# --- The directory API: each call is one transaction, committed here -------------------------


def list_directory(db: Database) -> list[Service]:
    """Every service in the directory, by id."""
    with db.session() as session:
        return [to_domain(row) for row in
                session.scalars(select(ServiceRow).order_by(ServiceRow.id))]


def get_service(db: Database, service_id: str) -> Service:
    with db.session() as session:
        row = session.get(ServiceRow, service_id)
        if row is None:
            raise NotFound("No service with this id.")
        return to_domain(row)


def add_service(db: Database, service: Service, *, actor: str) -> None:
    """A new service; its id must be free (PUT changes an existing one)."""
    with db.session() as session:
        if session.get(ServiceRow, service.id) is not None:
            raise Conflict(f"A service '{service.id}' exists already; PUT to change it.")
        upsert_services(session, [service], actor=actor)
        session.commit()


def replace_service(db: Database, service: Service, *, actor: str) -> None:
    """New details for a service that exists."""
    with db.session() as session:
        if session.get(ServiceRow, service.id) is None:
            raise NotFound("No service with this id.")
        upsert_services(session, [service], actor=actor)
        session.commit()


def delete_service(db: Database, service_id: str, *, actor: str) -> None:
    """Remove a service (prompts already made keep their copy of it)."""
    with db.session() as session:
        if session.get(ServiceRow, service_id) is None:
            raise NotFound("No service with this id.")
        session.execute(delete(ServiceRow).where(ServiceRow.id == service_id))
        record(session, actor=actor, entity="service", key=service_id, action="deleted")
        session.commit()
