"""Every error answer as RFC 9457 problem+json, in one place.

The services raise the domain errors of mecc.platform.errors (no Flask in them); flask-smorest
and werkzeug raise HTTPExceptions (404, 405, 413, webargs' 422); SQLAlchemy raises when the
database is away. `register_error_handlers` maps all of them here, and `ProblemApi` makes the
OpenAPI document describe what is actually sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import Flask, Response, g, json, request
from flask_smorest import Api
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from mecc.platform.errors import (
    MeccError,
    ServiceUnavailable,
    describe,
    flatten_errors,
    problem_details,
    problem_dict,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


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


def _respond(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    body["instance"] = request.path
    request_id = getattr(g, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    response = Response(json.dumps(body), status=body["status"], mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem(status: int, title: str, detail: str, *, slug: str,
            errors: Mapping[str, list[str]] | None = None,
            headers: Mapping[str, str] | None = None) -> Response:
    """A problem+json response for this request (its path and request id included)."""
    return _respond(problem_dict(status, title, detail, slug=slug, errors=errors), headers)


def error_response(exc: MeccError) -> Response:
    """A domain error as the problem+json it stands for."""
    return _respond(problem_details(exc), exc.headers)


def _internal_error() -> Response:
    return problem(500, "Internal Server Error", "An unexpected error occurred.",
                   slug="internal-error")


def http_error_response(exc: HTTPException) -> Response:
    """werkzeug/webargs errors (404, 405, 413, 422 from schema parsing) as problem+json."""
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors: dict[str, list[str]] = {}
    # webargs: {"json": {...}} or {"query": {...}}; the location is noise to a client.
    for messages in data.get("messages", {}).values():
        errors.update(flatten_errors(messages))
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
    valid_methods = getattr(exc, "valid_methods", None)
    if status == 405 and valid_methods:
        headers["Allow"] = ", ".join(valid_methods)
    slug = {422: "validation-error", 413: "payload-too-large"}.get(status, "about:blank")
    return problem(status, title, detail, slug=slug, errors=errors or None, headers=headers)


def document_problems(blp: Any, descriptions: Mapping[int, str],
                      *statuses: int) -> Callable[[Any], Any]:
    """Document a view's error answers (these `statuses`, or every one described) as
    problem+json in the OpenAPI spec; a 503 says when to retry."""
    def decorator(view: Any) -> Any:
        for status in statuses or tuple(descriptions):
            headers = ({"Retry-After": {"schema": {"type": "integer"},
                                        "description": "Seconds to wait before retrying."}}
                       if status == 503 else None)
            view = blp.alt_response(status, schema=ProblemSchema, content_type=PROBLEM_JSON,
                                    description=descriptions[status], headers=headers)(view)
        return view
    return decorator


def register_problem_responses(spec: Any, name: str = "Problem") -> None:
    """Register the shared error response components as application/problem+json.

    flask-smorest refers every operation's `default` response to `name` and registers its own
    per-status components as application/json; `ProblemApi` calls this from
    `_register_responses` so the spec describes what the server actually sends.
    """
    def response(description: str, retry: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {"description": description,
                               "content": {PROBLEM_JSON: {"schema": ProblemSchema}}}
        if retry:  # 429 and 503 say when to come back
            doc["headers"] = {"Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 0}}}
        return doc

    for status in HTTPStatus:
        if status >= 400:
            spec.components.response(status.name, response(status.phrase, status in (429, 503)),
                                     lazy=True)
    spec.components.response(name, response("An error, as RFC 9457 problem details."),
                             lazy=True)


class ProblemApi(Api):
    """flask-smorest's Api, answering every HTTP error as RFC 9457 problem+json."""

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = "Problem"

    def handle_http_exception(self, error: HTTPException) -> Response:
        return http_error_response(error)

    def _register_responses(self) -> None:
        # Every operation's default error response, documented as the problem+json we send.
        register_problem_responses(self.spec, self.DEFAULT_ERROR_RESPONSE_NAME)


def register_error_handlers(app: Flask) -> None:
    """Answer every exception a request can end in as problem+json (never an HTML page)."""

    @app.errorhandler(MeccError)
    def _domain_error(exc: MeccError) -> Response:
        return error_response(exc)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_down(exc: Exception) -> Response:
        log.warning("database unavailable", extra={"error": type(exc).__name__})
        return error_response(ServiceUnavailable(
            "The database is unavailable; nothing was stored. Retry shortly.", retry_after=5))

    @app.errorhandler(DBAPIError)
    def _database_error(exc: DBAPIError) -> Response:
        if exc.connection_invalidated:
            return _database_down(exc)
        log.exception("database error")
        return _internal_error()

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return http_error_response(exc)
        if isinstance(exc, RecursionError) and request.is_json:
            # webargs' JSON parsing meets `[[[[...` bodies too; they are the client's error.
            return problem(400, "Bad Request", "The body is nested too deeply to read.",
                           slug="bad-request")
        log.exception("unhandled error")
        return _internal_error()
