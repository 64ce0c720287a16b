"""The domain errors: what a service raises when it refuses, with the HTTP status it stands for.

No Flask here: services, tasks and the CLI raise and catch these; mecc.views.problems is the one
place that turns them (and every other error a request can end in) into problem+json.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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


class TooManyRequests(MeccError):
    status, title, slug = 429, "Too Many Requests", "too-many-requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class PayloadTooLarge(MeccError):
    status, title, slug = 413, "Content Too Large", "payload-too-large"


class UnsupportedMediaType(MeccError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


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


def problem_dict(status: int, title: str, detail: str, *, slug: str,
                 errors: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """RFC 9457 problem details as a dict (the HTTP edge adds the request's path and id)."""
    body: dict[str, Any] = {
        "type": f"urn:mecc:problem:{slug}" if slug != "about:blank" else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = dict(errors)
    return body


def problem_details(exc: MeccError) -> dict[str, Any]:
    """A domain error's problem details, as the API answers it or embeds it (batch results)."""
    return problem_dict(exc.status, exc.title, exc.detail, slug=exc.slug, errors=exc.errors)
