"""Live push: the SSE stream, stream tokens, and the recent prompts a screen opens with."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, g, request
from flask_smorest import Api, Blueprint
from marshmallow import fields, validate

from mecc.delivery import stream, tokens
from mecc.platform.errors import Forbidden, NotFound, ValidationFailed
from mecc.platform.fields import IDENT, Schema, StrictString
from mecc.platform.runtime import current
from mecc.views.auth import SECURITY, authenticate_request, bearer_token, require_scope
from mecc.views.responses import PromptSchema

F = TypeVar("F", bound=Callable[..., Any])
TOKEN_HEADER = "X-Stream-Token"  # noqa: S105 - a header name
TOKEN_SECURITY: list[dict[str, list[str]]] = [{"streamToken": []}, {"streamTokenQuery": []}]

blp = Blueprint("stream", __name__, url_prefix="/api/v1",
                description="Live push to staff screens: Server-Sent Events and stream tokens.")


def key_or_stream_token(scope: str, *, in_query: bool = True,
                        prompt_arg: str | None = None) -> Callable[[F], F]:
    """An API key with `scope`, or a stream token (header, or `?token=` when `in_query`).

    A token acts as its key narrowed to the token's filter; with `prompt_arg` the prompt named
    by that view argument must be one the token's screen could show (else 404).
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = request.headers.get(TOKEN_HEADER) or (
                request.args.get("token") if in_query else None)
            g.stream_grant = None
            if token and bearer_token() is None:
                grant, principal = tokens.authenticate_token(current(), token)
                if not principal.has_scope(scope):
                    raise Forbidden(f"The key behind this stream token lacks the '{scope}' "
                                    "scope.")
                if prompt_arg is not None:
                    tokens.check_prompt_in_grant(current(), grant, str(kwargs[prompt_arg]))
                g.stream_grant = grant
            else:
                principal = authenticate_request()
                if not principal.has_scope(scope):
                    raise Forbidden(f"This API key lacks the '{scope}' scope.")
            g.principal = principal
            return view(*args, **kwargs)

        wrapper.mecc_scope = (scope,)  # type: ignore[attr-defined]
        doc = dict(getattr(wrapper, "_apidoc", {}))
        manual = dict(doc.get("manual_doc", {}))
        manual["security"] = SECURITY + (TOKEN_SECURITY if in_query else TOKEN_SECURITY[:1])
        manual.setdefault("description", f"Requires scope `{scope}`, or a stream token from "
                          "`POST /api/v1/stream-tokens`.")
        doc["manual_doc"] = manual
        wrapper._apidoc = doc  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def request_filter(args: dict[str, Any]) -> tokens.StreamFilter:
    """The filter for this request: the token's (narrowed by the query), or the key's choice."""
    grant: tokens.StreamGrant | None = g.stream_grant
    if grant is None:
        return tokens.resolve_filter(g.principal, args.get("organisation"), args.get("team"),
                                     args.get("staff_id"))
    asked = args.get("organisation")
    if asked is not None and asked.strip().upper() != grant.filter.organisation:
        raise NotFound(f"No organisation {asked} visible to this token.")
    return grant.filter.narrowed(args.get("team"), args.get("staff_id"))


class FilterQuerySchema(Schema):
    organisation = fields.String(validate=validate.Length(min=1, max=16))
    team = fields.String(validate=validate.Length(min=1, max=100))
    staff_id = fields.String(validate=validate.Length(min=1, max=100))
    token = fields.String(validate=validate.Length(max=2000),
                          metadata={"description": "A stream token (EventSource cannot send "
                                    "headers)."})


class StreamQuerySchema(FilterQuerySchema):
    last_event_id = fields.Integer(validate=validate.Range(min=0), metadata={
        "description": "Replay after this message id (as the `Last-Event-ID` header does)."})


class RecentQuerySchema(FilterQuerySchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class RecentSchema(Schema):
    items = fields.List(fields.Nested(PromptSchema))
    last_event_id = fields.Integer(metadata={
        "description": "Open the stream with `last_event_id` set to this: nothing between this "
                       "answer and the stream is missed."})


class TokenRequestSchema(Schema):
    organisation = StrictString(required=True, validate=validate.Length(max=16))
    team = StrictString(validate=[validate.Length(max=100), IDENT])
    staff_id = StrictString(validate=[validate.Length(max=100), IDENT])
    person_id = StrictString(validate=[validate.Length(max=100), IDENT], metadata={
        "description": "Only this person's prompts: for a screen opened beside the record a "
                       "clinical system has open.", "example": "p-7f3a1c"})
    source = StrictString(validate=[validate.Length(max=100), IDENT], metadata={
        "description": "With person_id: the system whose person id it is (person ids are "
                       "each sending system's own; name it when several send for this "
                       "organisation).", "example": "emis-web"})
    event = fields.UUID(metadata={"description": "Only the prompts of this contact (the "
                                  "event's id, as answered by POST /api/v1/events)."})


class TokenSchema(Schema):
    token = fields.String()
    expires_at = fields.String(metadata={"format": "date-time"})


def _last_event_id(query_value: int | None) -> int | None:
    header = request.headers.get("Last-Event-ID")
    if header is None or header.strip() == "":
        return query_value
    try:
        value = int(header.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ValidationFailed("Last-Event-ID must be a message id this stream sent.",
                               errors={"Last-Event-ID": ["Not a valid message id."]})
    return value


SSE_DOC = {"200": {"description": "`text/event-stream`: `event: prompt` and "
                   "`event: prompt-updated` messages (data: the prompt JSON), each with an "
                   "`id:`; a `: hb` comment when idle.",
                   "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@blp.route("/stream", methods=["GET"])
@key_or_stream_token("prompts:read")
@blp.arguments(StreamQuerySchema, location="query", as_kwargs=True)
@blp.doc(responses=SSE_DOC)
def stream_prompts(**args: Any) -> Any:
    """Live prompts for an organisation (and team, member of staff) as Server-Sent Events."""
    runtime = current()
    flt = request_filter(args)
    settings = stream.stream_settings(runtime)
    grant: tokens.StreamGrant | None = g.stream_grant
    key_id = grant.key_id if grant else g.principal.key_id

    def still_allowed() -> bool:
        return stream.still_permitted(runtime, key_id, "prompts:read", flt.organisation)

    body = stream.event_stream(runtime, flt, _last_event_id(args.get("last_event_id")),
                               heartbeat=settings.heartbeat_seconds,
                               ends_at=grant.expires_at if grant else None,
                               still_allowed=still_allowed)
    return Response(body, mimetype="text/event-stream", headers={
        "Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"})


@blp.route("/stream/recent", methods=["GET"])
@key_or_stream_token("prompts:read")
@blp.arguments(RecentQuerySchema, location="query", as_kwargs=True)
@blp.response(200, RecentSchema)
def recent_prompts(**args: Any) -> Any:
    """The newest pushed prompts for the filter, for a screen that has just opened."""
    return stream.recent_prompts(current(), request_filter(args), args["limit"])


@blp.route("/stream-tokens", methods=["POST"])
@require_scope("prompts:read")
@blp.arguments(TokenRequestSchema)
@blp.response(200, TokenSchema)
def create_stream_token(body: dict[str, Any]) -> Any:
    """A short-lived token for `?token=` on the stream and the staff screen, optionally
    narrowed to one person (`person_id`) or one contact (`event`)."""
    runtime = current()
    settings = stream.stream_settings(runtime)
    token, grant = tokens.issue(runtime, g.principal, body, ttl=settings.token_seconds)
    return {"token": token, "expires_at": grant.expires_at_iso}


@blp.route("/stream-tokens/renew", methods=["POST"])
@key_or_stream_token("prompts:read", in_query=False)
@blp.response(200, TokenSchema)
def renew_stream_token() -> Any:
    """A fresh token for the same filter, sent with `X-Stream-Token` (the screen's own)."""
    runtime = current()
    settings = stream.stream_settings(runtime)
    grant: tokens.StreamGrant | None = g.stream_grant
    if grant is None:
        raise Forbidden("Renew with the stream token itself, in the X-Stream-Token header.")
    fresh = tokens.renewed(grant, ttl=settings.token_seconds,
                           session_seconds=settings.session_seconds)
    return {"token": tokens.sign_grant(runtime.settings.secret_key, fresh),
            "expires_at": fresh.expires_at_iso}


def register(api: Api) -> None:
    """Register the blueprint and document the stream-token security schemes."""
    api.spec.components.security_scheme("streamToken", {
        "type": "apiKey", "in": "header", "name": TOKEN_HEADER,
        "description": "A stream token from POST /api/v1/stream-tokens."})
    api.spec.components.security_scheme("streamTokenQuery", {
        "type": "apiKey", "in": "query", "name": "token",
        "description": "A stream token, for EventSource and the staff screen."})
    api.register_blueprint(blp)
