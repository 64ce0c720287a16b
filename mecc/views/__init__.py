"""HTTP edges: parse, authorise, call one service function, shape the answer."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest as WerkzeugBadRequest

from mecc.platform.errors import BadRequest, UnsupportedMediaType

PROBLEM_RESPONSES = {
    400: "Malformed request",
    401: "Missing or invalid API key",
    403: "The key lacks the scope or may not act for this organisation",
    404: "No such resource (or not visible to this key)",
    422: "Validation failed; `errors` names each bad field by its dotted path",
    503: "Database unavailable; retry after `Retry-After` seconds",
}


def json_body() -> Any:
    """The request's JSON body, or a problem saying why it cannot be read."""
    if not request.is_json:
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
    try:
        return request.get_json()
    except WerkzeugBadRequest:
        raise BadRequest("The body is not valid JSON.") from None
    except RecursionError:
        # json.loads gives up on `[[[[...` with RecursionError, not ValueError.
        raise BadRequest("The body is nested too deeply to read.") from None
