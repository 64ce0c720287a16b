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
from mecc.views.admin_responses import ServicePageSchema, ServiceSchema
from mecc.views.auth import require_scope
from mecc.views.bodies import ServiceBodySchema, ServiceUpdateSchema
from mecc.views.bodies import json_body as body_doc

blp = Blueprint("services", __name__, url_prefix="/api/v1/services",
                description="Local services (stop smoking, social prescribing, ...) to refer to.")

SERVICE_EXAMPLE = {
    "id": "stop-smoking-manchester", "name": "Stop Smoking Manchester",
    "service_type": "stop_smoking", "areas": ["M14", "M15"], "self_referral": True,
    "contact": {"phone": "0800 123 4567", "url": "https://www.example.nhs.uk/stop-smoking"},
    "description": "Free support to stop smoking."}
SERVICE_BODY_DOC = body_doc(ServiceBodySchema, SERVICE_EXAMPLE)
SERVICE_UPDATE_DOC = body_doc(ServiceUpdateSchema, SERVICE_EXAMPLE)


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
@blp.alt_response(200, schema=ServicePageSchema, success=True, description="The directory.")
def list_services() -> Any:
    """Every service in the directory."""
    services = service_store.list_directory(current().db)
    return {"items": [service_to_dict(service) for service in services], "next_cursor": None}


@blp.route("", methods=["POST"])
@require_scope("admin")
@blp.doc(requestBody=SERVICE_BODY_DOC)
@blp.alt_response(201, schema=ServiceSchema, success=True, description="Added.")
def create_service() -> Any:
    """Add a service (409 when the id is taken)."""
    service = _parse(json_body())
    service_store.add_service(current().db, service, actor=_actor())
    return service_to_dict(service), 201


@blp.route("/<service_id:service_id>", methods=["GET"])
@require_scope("prompts:read", "rules:read", "admin")
@blp.alt_response(200, schema=ServiceSchema, success=True, description="The service.")
def get_service(service_id: str) -> Any:
    """One service."""
    return service_to_dict(service_store.get_service(current().db, service_id))


@blp.route("/<service_id:service_id>", methods=["PUT"])
@require_scope("admin")
@blp.doc(requestBody=SERVICE_UPDATE_DOC)
@blp.alt_response(200, schema=ServiceSchema, success=True, description="Replaced.")
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


@blp.route("/<service_id:service_id>", methods=["DELETE"])
@require_scope("admin")
@blp.alt_response(204, success=True, description="Removed.")
def delete_service(service_id: str) -> Any:
    """Remove a service (prompts already made keep their copy)."""
    service_store.delete_service(current().db, service_id, actor=_actor())
    return "", 204
