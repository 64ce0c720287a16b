"""The local services directory that prompts refer to."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint

from mecc.admin import services as service_store
from mecc.clinical.directory import ServiceDirectoryError, parse_service, service_to_dict
from mecc.platform.errors import ValidationFailed
from mecc.platform.runtime import current
from mecc.views import json_body
from mecc.views.auth import require_scope

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
    return str(g.principal.actor)  # the person (name and email) or the key


@blp.route("", methods=["GET"])
@require_scope("prompts:read", "rules:read", "admin")
def list_services() -> Any:
    """Every service in the directory."""
    services = service_store.list_directory(current().db)
    return {"items": [service_to_dict(service) for service in services], "next_cursor": None}


@blp.route("", methods=["POST"])
@require_scope("admin")
@blp.doc(requestBody=SERVICE_BODY_DOC)
def create_service() -> Any:
    """Add a service (409 when the id is taken)."""
    service = _parse(json_body())
    service_store.add_service(current().db, service, actor=_actor())
    return service_to_dict(service), 201


@blp.route("/<string:service_id>", methods=["GET"])
@require_scope("prompts:read", "rules:read", "admin")
def get_service(service_id: str) -> Any:
    """One service."""
    return service_to_dict(service_store.get_service(current().db, service_id))


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
    service_store.replace_service(current().db, service, actor=_actor())
    return service_to_dict(service)


@blp.route("/<string:service_id>", methods=["DELETE"])
@require_scope("admin")
def delete_service(service_id: str) -> Any:
    """Remove a service (prompts already made keep their copy)."""
    service_store.delete_service(current().db, service_id, actor=_actor())
    return "", 204
