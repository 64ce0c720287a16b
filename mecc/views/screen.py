"""The staff screen (`/screen?token=`) and the static files web pages use."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, g, make_response, render_template, request

from mecc.delivery import stream
from mecc.platform.auth import open_route
from mecc.platform.errors import Unauthorized
from mecc.platform.runtime import current

F = TypeVar("F", bound=Callable[..., Any])
OUTCOME_LABELS = {
    "conversation_had": "Conversation had",
    "referred": "Referred",
    "declined": "Declined by the person",
    "not_now": "Not now",
    "not_appropriate": "Not appropriate",
}

blp = Blueprint("screen", __name__)


def _protected(response: Response) -> Response:
    # The page carries a token in its URL: keep it out of Referer headers and caches, and let
    # only our own script and styles run.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'")
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def screen_token_required(view: F) -> F:
    """A valid stream token in `?token=`; otherwise a page (not JSON) saying what to do."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = request.args.get("token", "")
        try:
            if not token:
                raise Unauthorized("This screen needs a link from your clinical system.")
            g.stream_grant, g.principal = stream.authenticate_token(current(), token)
        except Unauthorized as exc:
            page = render_template("screen.html", error=exc.detail)
            return _protected(make_response(page, 401))
        return view(*args, **kwargs)

    wrapper.mecc_scope = ("prompts:read",)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


@blp.get("/screen")
@screen_token_required
def screen() -> Any:
    """The live prompt screen a member of staff keeps open beside the clinical system."""
    grant: stream.StreamGrant = g.stream_grant
    settings = stream.stream_settings(current())
    page = render_template(
        "screen.html", error=None, token=request.args["token"], grant=grant,
        may_write=g.principal.has_scope("prompts:write"), outcomes=OUTCOME_LABELS,
        token_seconds=settings.token_seconds)
    return _protected(make_response(page))


def register(app: Flask) -> None:
    """The staff screen; Flask's own /static/ route (scripts, styles) is deliberately open."""
    app.register_blueprint(blp)
    if "static" in app.view_functions:
        open_route(app.view_functions["static"])
