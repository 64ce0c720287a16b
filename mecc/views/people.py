"""Sign-in pages (password, OpenID Connect), sign-out, and the guard for pages that need a
signed-in person. API keys remain for systems; people sign in with their own account."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit
from flask_wtf.csrf import CSRFError

from mecc import __version__
from mecc.people import accounts, oidc, roles
from mecc.people.sessions import (
    MACHINE_PREFIXES,
    end_session,
    session_principal,
    signed_in,
    start_session,
)
from mecc.platform.runtime import current
from mecc.views.auth import open_route
from mecc.views.problems import http_error_response, problem

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_NEXT = "/admin/rules"
NEXT_KEY = "mecc_next"
# Failed password attempts (a refused sign-in answers 401; only those count): per client
# address against spraying many accounts, per account against guessing one password.
ATTEMPTS_PER_ADDRESS = "10 per minute;100 per hour"
ATTEMPTS_PER_ACCOUNT = "10 per 15 minutes"

blp = Blueprint("people", __name__)


def page_headers(response: Response) -> Response:
    """Pages acting with a person's session are never cached. (The content security policy,
    nosniff and Referrer-Policy are on every answer: mecc.views.headers.)"""
    response.headers["Cache-Control"] = "no-store"
    return response


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site only (never another host)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in value):
        return DEFAULT_NEXT
    return value


def sign_in_page(status: int, *, error: str | None = None, next_path: str | None = None,
                 email: str = "", refused_scope: str | None = None) -> Response:
    person = signed_in()
    page = render_template(
        "sign_in.html", version=__version__, error=error, email=email,
        next=safe_next(next_path), oidc=oidc.enabled(), person=person,
        role_label=roles.LABELS.get(person.role, person.role) if person else None,
        refused_scope=refused_scope)
    return page_headers(make_response(page, status))


def sign_in_required(scope: str) -> Callable[[F], F]:
    """A page for signed-in people whose role has `scope`; anyone else gets the sign-in page
    (401), or a page saying what their role lacks (403)."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = session_principal()
            here = request.full_path.rstrip("?")
            if principal is None:
                expired = g.get("session_expired", False)
                return sign_in_page(401, next_path=here, error=(
                    "Your session has ended; please sign in again." if expired else None))
            if not principal.has_scope(scope):
                return sign_in_page(403, next_path=here, refused_scope=scope)
            g.principal = principal
            return view(*args, **kwargs)

        wrapper.mecc_scope = (scope,)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


@blp.get("/sign-in")
@open_route
def sign_in_form() -> Any:
    """The sign-in page (a person already signed in goes straight on)."""
    if session_principal() is not None:
        return redirect(safe_next(request.args.get("next")), 303)
    return sign_in_page(200, next_path=request.args.get("next"))


@blp.post("/sign-in")
@open_route
def sign_in_with_password() -> Any:
    """Check an email address and password; on success start a session and go on."""
    email = request.form.get("email", "")
    next_path = request.form.get("next")
    try:
        with current().db.session() as db_session:
            user = accounts.sign_in_with_password(db_session, email,
                                                  request.form.get("password", ""))
            db_session.commit()
            start_session(user)
    except accounts.SignInRefused as exc:
        return sign_in_page(401, error=str(exc), next_path=next_path, email=email)
    return redirect(safe_next(next_path), 303)


@blp.get("/sign-in/oidc")
@open_route
def sign_in_with_oidc() -> Any:
    """Send the browser to the organisation's OpenID provider."""
    if not oidc.enabled():
        return sign_in_page(404, error="Sign-in with an organisation account is not set up.")
    session[NEXT_KEY] = safe_next(request.args.get("next"))
    public = current().settings.public_url
    callback = (public + url_for("people.oidc_callback") if public
                else url_for("people.oidc_callback", _external=True))
    try:
        return oidc.begin(callback)
    except accounts.SignInRefused as exc:
        return sign_in_page(503, error=str(exc), next_path=session.get(NEXT_KEY))


@blp.get("/sign-in/oidc/callback")
@open_route
def oidc_callback() -> Any:
    """Where the provider sends the browser back: verify, find the account, sign in."""
    if not oidc.enabled():
        return sign_in_page(404, error="Sign-in with an organisation account is not set up.")
    settings = current().settings
    next_path = session.pop(NEXT_KEY, None)
    try:
        claims = oidc.finish(settings.oidc_issuer, settings.oidc_role_claim)
        with current().db.session() as db_session:
            user = accounts.sign_in_with_oidc(db_session, claims,
                                              role_claim=settings.oidc_role_claim)
            db_session.commit()
            start_session(user)
    except accounts.SignInRefused as exc:
        return sign_in_page(401, error=str(exc), next_path=next_path)
    return redirect(safe_next(next_path), 303)


@blp.post("/sign-out")
@open_route
def sign_out() -> Any:
    """End this browser's session."""
    end_session()
    return redirect(url_for("people.sign_in_form"), 303)


def _csrf_refused(exc: CSRFError) -> Response:
    if request.path.startswith(MACHINE_PREFIXES):
        return problem(403, "Forbidden", f"{exc.description} Reload the page and try again.",
                       slug="csrf-refused")
    return sign_in_page(400, next_path=request.form.get("next"), error=(
        "The form had expired or came from another page; please try again."))


def _too_many_attempts(limit: RequestLimit) -> Response:
    response = sign_in_page(429, next_path=request.form.get("next"),
                            email=request.form.get("email", ""), error=(
        "Too many sign-in attempts; wait a few minutes before trying again."))
    response.headers["Retry-After"] = str(max(1, limit.reset_at - int(time.time())))
    return response


def _limited(exc: RateLimitExceeded) -> Any:
    """The sign-in page's own answer when one of its limits made it (else problem+json)."""
    if exc.response is not None:
        return exc.response
    return http_error_response(exc)


def _account_key() -> str:
    email = request.form.get("email", "").strip().lower()
    return "sign-in:" + hashlib.sha256(email.encode()).hexdigest()[:24]


def _address_key() -> str:
    return "sign-in-ip:" + (request.remote_addr or "unknown")


def _refused(response: Response) -> bool:
    return response.status_code == 401


def register(app: Flask, limiter: Limiter) -> None:
    """The sign-in pages, the CSRF refusal answer, and the limits on failed attempts."""
    app.register_blueprint(blp)
    app.register_error_handler(CSRFError, _csrf_refused)
    app.register_error_handler(RateLimitExceeded, _limited)
    app.context_processor(lambda: {"person": signed_in()})
    for limit, key in ((ATTEMPTS_PER_ADDRESS, _address_key),
                       (ATTEMPTS_PER_ACCOUNT, _account_key)):
        limiter.limit(limit, key_func=key, methods=["POST"], deduct_when=_refused,
                      on_breach=_too_many_attempts)(blp)
