"""HTTP edges: parse, authorise, call one service function, shape the answer.

Every request value is read one way, whichever view takes it (mecc.platform.fields): a JSON
body with a key repeated is a 400, a body that is not JSON is a 415, text that cannot be
stored and integers beyond a column's range are a 422 naming the field, in the body, the
query string or the path alike.
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import Flask, request
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from mecc.platform.errors import (
    BadRequest,
    UnsupportedMediaType,
    ValidationFailed,
    describe,
)
from mecc.platform.fields import (
    INT32_MAX,
    INT32_MIN,
    RepeatedKey,
    json_types_strict,
    loads_strict,
    text_problem,
    unsafe_values,
)

PROBLEM_RESPONSES = {
    400: "Malformed request",
    401: "Missing or invalid API key",
    403: "The key lacks the scope or may not act for this organisation",
    404: "No such resource (or not visible to this key)",
    422: "Validation failed; `errors` names each bad field by its dotted path",
    503: "Database unavailable; retry after `Retry-After` seconds",
}


def _read_json(data: bytes) -> Any:
    try:
        return loads_strict(data)
    except RepeatedKey as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest("The body is not valid JSON.") from None
    except RecursionError:
        # json.loads gives up on `[[[[...` with RecursionError, not ValueError.
        raise BadRequest("The body is nested too deeply to read.") from None


def refuse_unsafe_values(value: Any, prefix: str = "") -> None:
    """422 naming each text that cannot be stored and each integer beyond 64 bits."""
    errors = unsafe_values(value, prefix)
    if errors:
        raise ValidationFailed(describe(errors), errors=errors)


def json_body(*, check_values: bool = True) -> Any:
    """The request's JSON body, or a problem saying why it cannot be read.

    `check_values=False` leaves the checks of text and integers to the caller: a batch checks
    each item on its own, so that one bad item never fails the others.
    """
    if not request.is_json:
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
    body = _read_json(request.get_data(cache=True))
    if check_values:
        refuse_unsafe_values(body)
    return body


class StrictParser(FlaskParser):
    """webargs' Flask parser, reading bodies the way json_body does."""

    def _raw_load_json(self, req: Any) -> Any:
        if not is_json_request(req):
            if req.get_data(cache=True):
                raise UnsupportedMediaType("Send the body as JSON with "
                                           "'Content-Type: application/json'.")
            return core.missing
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        body = _read_json(data)
        refuse_unsafe_values(body)
        return body

    def parse(self, argmap: Any, req: Any = None, *, location: str | None = None,
              **kwargs: Any) -> Any:
        if (location or self.location) != "json":
            return super().parse(argmap, req, location=location, **kwargs)
        with json_types_strict():
            return super().parse(argmap, req, location=location, **kwargs)


# Every API blueprint reads its arguments with this parser. It is set on flask-smorest's
# Blueprint class here, in the package every view module imports before its own code runs, so
# no view can be decorated (flask-smorest binds the parser at decoration) with the lenient
# default.
flask_smorest.Blueprint.ARGUMENTS_PARSER = StrictParser()


def check_request_values(app: Flask) -> None:
    """Refuse, before any view runs, query, form and path values that cannot be stored (NUL
    characters) and path integers beyond a 32-bit column."""

    @app.before_request
    def _query_and_path() -> None:
        errors: dict[str, list[str]] = {}
        fields = request.args.items(multi=True)
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            fields = [*fields, *request.form.items(multi=True)]  # the sign-in page
        for name, value in fields:
            problem = text_problem(name) or text_problem(value)
            if problem:
                errors[name] = [problem]
        for name, value in (request.view_args or {}).items():
            problem = text_problem(value) if isinstance(value, str) else None
            if isinstance(value, int) and not INT32_MIN <= value <= INT32_MAX:
                problem = f"Out of range: must be between {INT32_MIN} and {INT32_MAX}."
            if problem:
                errors[name] = [problem]
        if errors:
            raise ValidationFailed(describe(errors), errors=errors)
