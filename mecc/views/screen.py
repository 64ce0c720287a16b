"""The staff screen (`/screen?token=`) and the static files web pages use."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, g, make_response, render_template, request

from mecc.admin.keys import Principal
from mecc.delivery import stream, tokens
from mecc.people.sessions import session_principal
from mecc.platform.errors import NotFound, Unauthorized, ValidationFailed
from mecc.platform.runtime import current
from mecc.prompts.wording import OUTCOME_LABELS, screen_wording
from mecc.views.auth import open_route
from mecc.views.people import sign_in_page

F = TypeVar("F", bound=Callable[..., Any])
# A contact folds into "Earlier" once this old (or once every prompt of it has an outcome).
FOLD_AFTER_HOURS = 4
READ_ONLY = ("This screen shows prompts but cannot record outcomes: it was opened with a link "
             "that may only read them. Record what happened in your clinical system, or ask "
             "your system administrator for a screen link that can record outcomes.")

blp = Blueprint("screen", __name__)


def _protected(response: Response) -> Response:
    # The page carries a token in its URL: keep it out of caches. (Referrer-Policy: no-referrer
    # and the content security policy are on every page: mecc.views.headers.)
    response.headers["Cache-Control"] = "no-store"
    return response


def screen_token_required(view: F) -> F:
    """A valid stream token in `?token=`, or a signed-in person whose role shows prompts (a
    token is made for them); otherwise a page (not JSON) saying what to do."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = request.args.get("token", "")
        person = None if token else session_principal()
        if not token and (person is None or not person.has_scope("prompts:read")):
            return sign_in_page(401 if person is None else 403,
                                next_path=request.full_path.rstrip("?"),
                                refused_scope="prompts:read")
        try:
            if person is not None:
                token = _token_for(person)
            g.stream_grant, g.principal = tokens.authenticate_token(current(), token)
        except (Unauthorized, ValidationFailed, NotFound) as exc:
            page = render_template("screen.html", error=exc.detail)
            return _protected(make_response(page, exc.status))
        g.stream_token = token
        return view(*args, **kwargs)

    wrapper.mecc_scope = ("prompts:read",)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


@blp.get("/screen")
@screen_token_required
def screen() -> Any:
    """The live prompt screen a member of staff keeps open beside the clinical system."""
    grant: tokens.StreamGrant = g.stream_grant
    runtime = current()
    settings = stream.stream_settings(runtime)
    may_write = g.principal.has_scope("prompts:write")
    page = render_template(
        "screen.html", error=None, token=g.stream_token, grant=grant, may_write=may_write,
        read_only_reason=None if may_write else READ_ONLY, outcomes=OUTCOME_LABELS,
        token_seconds=settings.token_seconds, wording=screen_wording(),
        display_seconds=int(runtime.settings.display_retention_hours * 3600),
        fold_after_seconds=FOLD_AFTER_HOURS * 3600)
    return _protected(make_response(page))


def _token_for(person: Principal) -> str:
    """A stream token for a signed-in person: their organisation (a person for every
    organisation names one with `?organisation=`), optionally narrowed to a team or staff id,
    or to one person (`?person_id=&source=`) or one contact (`?event=`)."""
    runtime = current()
    token, _ = tokens.issue(runtime, person, request.args,
                            ttl=stream.stream_settings(runtime).token_seconds)
    return token


def register(app: Flask) -> None:
    """The staff screen; Flask's own /static/ route (scripts, styles) is deliberately open."""
    app.register_blueprint(blp)
    if "static" in app.view_functions:
        open_route(app.view_functions["static"])
