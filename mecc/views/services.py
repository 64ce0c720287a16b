"""The local services directory that prompts refer to."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint
from sqlalchemy import delete, select

from mecc.admin import services as service_store
from mecc.admin.audit import record
from mecc.clinical.directory import ServiceDirectoryError, parse_service, service_to_dict
from mecc.platform.auth import require_scope
from mecc.platform.errors import Conflict, NotFound, ValidationFailed
from mecc.platform.runtime import current
from mecc.store.models import Service as ServiceRow
from mecc.views import json_body

blp = Blueprint("services", __name__, url_prefix="/api/v1/services",
                description="Local services (stop smoking, social prescribing, ...) to refer to.")

SERVICE_BODY_DOC = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["id", "name", "service_type"],
    "description": "id, name, service_type, areas (postcode districts), organisations (ODS), "
    "self_referral, contact {phone, email, url}, referral_url, description."}}}}


def _parse(body: Any) -> Any:
    try:
        return parse_service(body)
    except ServiceDirectoryError as exc:
        errors: dict[str, list[str]] = {}
        for item in exc.errors:
            errors.setdefault(item.get("path") or "body", []).append(item["message"])
        raise ValidationFailed("The service is not valid.", errors=errors) from None


def _actor() -> str:
    return f"{g.principal.name} (key {g.principal.key_id})"


@blp.route("", methods=["GET"])
@require_scope("prompts:read", "rules:read", "admin")
def list_services() -> Any:
    """Every service in the directory."""
    with current().db.session() as session:
        rows = session.scalars(select(ServiceRow).order_by(ServiceRow.id))
        return {"items": [service_to_dict(service_store.to_domain(r)) for r in rows],
                "next_cursor": None}


@blp.route("", methods=["POST"])
@require_scope("admin")
@blp.doc(requestBody=SERVICE_BODY_DOC)
def create_service() -> Any:
    """Add a service (409 when the id is taken)."""
    service = _parse(json_body())
    with current().db.session() as session:
        if session.get(ServiceRow, service.id) is not None:
            raise Conflict(f"A service '{service.id}' exists already; PUT to change it.")
        service_store.upsert_services(session, [service], actor=_actor())
        session.commit()
    return service_to_dict(service), 201


@blp.route("/<string:service_id>", methods=["GET"])
@require_scope("prompts:read", "rules:read", "admin")
def get_service(service_id: str) -> Any:
    """One service."""
    with current().db.session() as session:
        row = session.get(ServiceRow, service_id)
        if row is None:
            raise NotFound("No service with this id.")
        return service_to_dict(service_store.to_domain(row))


@blp.route("/<string:service_id>", methods=["PUT"])
@require_scope("admin")
@blp.doc(requestBody=SERVICE_BODY_DOC)
def update_service(service_id: str) -> Any:
    """Replace a service's details."""
    body = json_body()
    if isinstance(body, dict):
        body = {"id": service_id, **body}
    service = _parse(body)
    if service.id != service_id:
        raise ValidationFailed("The id in the body differs from the URL.",
                               errors={"id": [f"Must be '{service_id}'."]})
    with current().db.session() as session:
        if session.get(ServiceRow, service_id) is None:
            raise NotFound("No service with this id.")
        service_store.upsert_services(session, [service], actor=_actor())
        session.commit()
    return service_to_dict(service)


@blp.route("/<string:service_id>", methods=["DELETE"])
@require_scope("admin")
def delete_service(service_id: str) -> Any:
    """Remove a service (prompts already made keep their copy)."""
    with current().db.session() as session:
        if session.get(ServiceRow, service_id) is None:
            raise NotFound("No service with this id.")
        session.execute(delete(ServiceRow).where(ServiceRow.id == service_id))
        record(session, actor=_actor(), entity="service", key=service_id, action="deleted")
        session.commit()
    return "", 204
