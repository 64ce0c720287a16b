"""Deny by default: every route declares the scope it needs, or that it is deliberately open."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request

from mecc.admin import keys
from mecc.admin.keys import Principal
from mecc.people.sessions import SESSION_PRINCIPAL
from mecc.platform.errors import Forbidden, Unauthorized
from mecc.platform.runtime import current

F = TypeVar("F", bound=Callable[..., Any])
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# A revoked key stops working within this many seconds in every process.
CACHE_SECONDS = 10.0
_cache: dict[str, tuple[float, Principal]] = {}
_cache_lock = threading.Lock()


def _principal_for(presented: str) -> Principal | None:
    digest = hashlib.sha256(presented.encode()).hexdigest()
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit and hit[0] > now:
        return hit[1]
    with current().db.session() as session:
        principal = keys.authenticate(session, presented)
    if principal is not None:
        with _cache_lock:
            if len(_cache) > 10_000:
                _cache.clear()
            _cache[digest] = (now + CACHE_SECONDS, principal)
    return principal


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate_request() -> Principal:
    """The key in the Authorization header; without that header, the signed-in person (the
    pages' requests, whose CSRF token mecc.people.sessions has already checked)."""
    find_person = current_app.extensions.get(SESSION_PRINCIPAL)
    if find_person is not None and not request.headers.get("Authorization"):
        person: Principal | None = find_person()
        if person is not None:
            return person
    token = bearer_token()
    if token is None:
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    principal = _principal_for(token)
    if principal is None:
        raise Unauthorized("The API key is not valid or has been revoked.")
    return principal


def require_scope(*scopes: str) -> Callable[[F], F]:
    """The view needs a key with one of these scopes (or `admin`)."""
    unknown = set(scopes) - set(keys.SCOPES)
    if unknown or not scopes:
        raise ValueError(f"unknown scopes {sorted(unknown)}")
    wording = " or ".join(f"'{s}'" for s in scopes)

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate_request()
            if not any(principal.has_scope(s) for s in scopes):
                who = "Your role" if principal.kind == "user" else "This API key"
                raise Forbidden(f"{who} lacks the {wording} scope.")
            g.principal = principal
            return view(*args, **kwargs)

        wrapper.mecc_scope = scopes  # type: ignore[attr-defined]
        doc = dict(getattr(wrapper, "_apidoc", {}))
        manual = dict(doc.get("manual_doc", {}))
        manual["security"] = SECURITY
        manual.setdefault("description", "Requires scope " + " or ".join(
            f"`{s}`" for s in scopes) + ".")
        doc["manual_doc"] = manual
        wrapper._apidoc = doc  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def open_route(view: F) -> F:
    """Deliberately public (health, metrics, docs): the route walk test allows only these."""
    view.mecc_open = True  # type: ignore[attr-defined]
    return view


def principal() -> Principal:
    value: Principal = g.principal
    return value
