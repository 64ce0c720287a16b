"""CDS Hooks 2.0 endpoints: discovery, service calls and feedback (at the app root).

An EHR may call from a browser app, so these answer CORS for the origins of the registered
clients' issuers (and no other): the pre-flight, then the call itself. Tokens travel in the
Authorization header, never cookies, so credentials are not allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, g, request

from mecc.interop import cds
from mecc.interop.cds.clients import allowed_origins
from mecc.platform.errors import Unauthorized
from mecc.platform.runtime import current
from mecc.views import json_body
from mecc.views.auth import bearer_token, open_route

F = TypeVar("F", bound=Callable[..., Any])
blp = Blueprint("cds", __name__, url_prefix="/cds-services")
CORS_PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


@blp.after_request
def _cors(response: Response) -> Response:
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if not origin or origin not in allowed_origins(current()):
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":
        response.headers.update(CORS_PREFLIGHT)
    return response


def cds_auth(*scopes: str) -> Callable[[F], F]:
    """A registered CDS client's JWT (aud = this URL), or an API key with one of `scopes`."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = bearer_token()
            if token is None:
                raise Unauthorized("Send 'Authorization: Bearer <JWT>' signed by a registered "
                                   "CDS client key, or an API key.")
            settings = current().settings
            # The Host header is the caller's to choose: the URL a JWT's aud must name comes
            # from MECC_PUBLIC_URL, or from the request only when a development setup says so.
            audience = cds.expected_audience(request.base_url, settings.public_url or None,
                                             request.path) \
                if settings.public_url or settings.cds_audience_from_host else None
            g.caller = cds.authenticate(current(), token, audience=audience, scopes=scopes)
            g.principal = g.caller.principal
            return view(*args, **kwargs)

        wrapper.mecc_scope = tuple(scopes)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


@blp.get("")
@open_route
def discovery() -> Any:
    """The CDS services offered here, with their prefetch templates."""
    return cds.discovery()


@blp.post("/<service_id>")
@cds_auth("events:write")
def call(service_id: str) -> Any:
    """Call a CDS service: the hook becomes a contact event, evaluated now; cards back."""
    svc = cds.service(service_id)
    return cds.call_service(current(), g.caller, svc, json_body())


@blp.post("/<service_id>/feedback")
@cds_auth("events:write", "prompts:write")
def feedback(service_id: str) -> Any:
    """What the user did with the cards: recorded as prompt outcomes."""
    cds.service(service_id)
    items = cds.parse_feedback(json_body())
    recorded = cds.record_feedback(current(), g.caller, items)
    return {"recorded": recorded}
