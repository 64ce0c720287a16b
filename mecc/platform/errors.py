"""Domain exceptions and their one mapping to RFC 9457 problem details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from flask import Response, g, json, request
from werkzeug.exceptions import HTTPException

PROBLEM_JSON = "application/problem+json"


class MeccError(Exception):
    """Base of every error the API answers on purpose."""

    status = 500
    title = "Internal Server Error"
    slug = "internal-error"

    def __init__(self, detail: str | None = None, *, errors: Mapping[str, list[str]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})


class BadRequest(MeccError):
    status, title, slug = 400, "Bad Request", "bad-request"


class ValidationFailed(MeccError):
    status, title, slug = 422, "Unprocessable Content", "validation-error"


class Unauthorized(MeccError):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="mecc"'})


class Forbidden(MeccError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(MeccError):
    status, title, slug = 404, "Not Found", "not-found"


class Conflict(MeccError):
    status, title, slug = 409, "Conflict", "conflict"


class ServiceUnavailable(MeccError):
    status, title, slug = 503, "Service Unavailable", "service-unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dicts -> {"person.age": [...], "conditions.0.code": [...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = str(key)
            path = prefix if name == "_schema" and prefix else (
                f"{prefix}.{name}" if prefix else name)
            if name == "_schema" and not prefix:
                path = "body"
            for sub, msgs in flatten_errors(value, path).items():
                out.setdefault(sub, []).extend(msgs)
    elif isinstance(messages, list | tuple):
        if all(isinstance(m, str) for m in messages):
            out[prefix or "body"] = list(messages)
        else:
            for msg in messages:
                for sub, msgs in flatten_errors(msg, prefix).items():
                    out.setdefault(sub, []).extend(msgs)
    else:
        out[prefix or "body"] = [str(messages)]
    return out


def describe(errors: Mapping[str, list[str]]) -> str:
    """A one-line detail a person can act on, naming the fields."""
    parts = [f"{path}: {msgs[0]}" for path, msgs in sorted(errors.items()) if msgs]
    if not parts:
        return "The request is not valid."
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return "Invalid request: " + "; ".join(parts[:3]) + more


def problem(status: int, title: str, detail: str, *, slug: str,
            errors: Mapping[str, list[str]] | None = None,
            headers: Mapping[str, str] | None = None) -> Response:
    body = problem_dict(status, title, detail, slug=slug, errors=errors)
    body["instance"] = request.path
    request_id = getattr(g, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem_dict(status: int, title: str, detail: str, *, slug: str,
                 errors: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:mecc:problem:{slug}" if slug != "about:blank" else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = dict(errors)
    return body


def from_mecc_error_dict(exc: MeccError) -> dict[str, Any]:
    """Problem details as a dict, for embedding (batch results)."""
    return problem_dict(exc.status, exc.title, exc.detail, slug=exc.slug, errors=exc.errors)


def from_mecc_error(exc: MeccError) -> Response:
    return problem(exc.status, exc.title, exc.detail, slug=exc.slug, errors=exc.errors,
                   headers=exc.headers)


def from_http_exception(exc: HTTPException) -> Response:
    """werkzeug/webargs errors (404, 405, 413, 422 from schema parsing) as problem+json."""
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors: dict[str, list[str]] = {}
    if "messages" in data:
        # webargs: {"json": {...}} or {"query": {...}}; the location is noise to a client.
        for location, messages in data["messages"].items():
            flat = flatten_errors(messages)
            if location == "query":
                flat = {k: v for k, v in flat.items()}
            errors.update(flat)
    title = exc.name
    if status == 422 and errors:
        detail = describe(errors)
    elif status == 404:
        detail = "No such resource."
    elif status == 405:
        detail = f"{request.method} is not allowed here."
    elif status == 413:
        detail = "The request body is larger than the server accepts."
    elif status == 400:
        detail = exc.description or "The request could not be read."
    else:
        detail = exc.description or title
    headers = {}
    if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    slug = {422: "validation-error", 413: "payload-too-large"}.get(status, "about:blank")
    return problem(status, title, detail, slug=slug, errors=errors or None, headers=headers)


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details (documentation of every error response)."""

    type = ma.fields.String(metadata={"example": "urn:mecc:problem:validation-error"})
    title = ma.fields.String(metadata={"example": "Unprocessable Content"})
    status = ma.fields.Integer(metadata={"example": 422})
    detail = ma.fields.String(
        metadata={"example": "Invalid request: person.age: Must be between 0 and 130."})
    instance = ma.fields.String(metadata={"example": "/api/v1/events"})
    request_id = ma.fields.String()
    errors = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()),
        metadata={"description": "Each bad field by its dotted path.",
                  "example": {"person.age": ["Must be between 0 and 130."]}},
    )


class PayloadTooLarge(MeccError):
    status, title, slug = 413, "Content Too Large", "payload-too-large"


class UnsupportedMediaType(MeccError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


def register_problem_responses(spec: Any, name: str = "Problem") -> None:
    """Register the shared error response components as application/problem+json.

    flask-smorest refers every operation's `default` response to `name` and registers its own
    per-status components as application/json; an Api subclass calls this from
    `_register_responses` so the spec describes what the server actually sends.
    """
    from http import HTTPStatus

    def response(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {PROBLEM_JSON: {"schema": ProblemSchema}}}

    for status in HTTPStatus:
        if status >= 400:
            spec.components.response(status.name, response(status.phrase), lazy=True)
    spec.components.response(name, response("An error, as RFC 9457 problem details."),
                             lazy=True)
