"""Signed-in sessions (Flask-Login) and CSRF tokens (Flask-WTF) for the pages.

The session is Flask's signed cookie: HttpOnly, SameSite=Lax, Secure whenever the request came
over HTTPS (or MECC_PUBLIC_URL is https). It ends after 30 idle minutes and at the latest 12
hours after sign-in; both times are kept inside the signed cookie and checked on every request,
so a copied cookie does not outlive them either.

A session is a credential the browser sends by itself, so every state-changing request that
relies on it must carry the page's CSRF token (header `X-CSRFToken`). Requests with their own
credential in a header (`Authorization: Bearer`, `X-Stream-Token`) are exempt: another site
cannot make a browser send those.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from flask import Flask, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFProtect

from mecc.admin.keys import Principal
from mecc.people import accounts
from mecc.platform.runtime import current
from mecc.store.models import User

# app.extensions[SESSION_PRINCIPAL]: how mecc.views.auth finds the signed-in person behind a
# request (pages only; API calls carry a key).
SESSION_PRINCIPAL = "mecc.session_principal"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
SIGNED_IN_AT = "mecc_signed_in_at"
SEEN_AT = "mecc_seen_at"
# "Last seen" to the minute is precise enough for a 30-minute limit.
SEEN_RESOLUTION = 60
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CREDENTIAL_HEADERS = ("Authorization", "X-Stream-Token")
MACHINE_PREFIXES = ("/api/", "/cds-services")

login_manager = LoginManager()
csrf = CSRFProtect()


class SignedIn(UserMixin):
    """Flask-Login's user: the account id, and the caller it acts as."""

    def __init__(self, user: User) -> None:
        self.id = user.id
        self.role = user.role
        self.principal = accounts.principal_of(user)


@login_manager.user_loader
def _load_user(user_id: str) -> SignedIn | None:
    with current().db.session() as db_session:
        user = accounts.active_user(db_session, user_id)
        return SignedIn(user) if user is not None else None


class _SessionInterface(SecureCookieSessionInterface):
    """Marks the cookie Secure per request: over HTTPS always, over plain HTTP (a developer's
    machine) it could not be sent back at all."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request.is_secure or current().settings.public_url.startswith("https://"))


def flask_config() -> dict[str, Any]:
    return {
        "SESSION_COOKIE_NAME": "mecc_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # The browser drops the cookie after the idle time; the checks below enforce it.
        "PERMANENT_SESSION_LIFETIME": IDLE,
        # Tokens are checked explicitly (_protect_from_forgery) so that API requests carrying
        # their own credential are not asked for one.
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": int(ABSOLUTE.total_seconds()),
        # The pages send no Referer (Referrer-Policy: no-referrer); the token and SameSite=Lax
        # are the defence, not the Referer check Flask-WTF makes over HTTPS by default.
        "WTF_CSRF_SSL_STRICT": False,
    }


def init_sessions(app: Flask) -> None:
    app.config.update(flask_config())
    app.session_interface = _SessionInterface()
    login_manager.init_app(app)
    app.extensions[SESSION_PRINCIPAL] = session_principal
    csrf.init_app(app)
    app.before_request(_expire_session)
    app.before_request(_protect_from_forgery)


def start_session(user: User) -> None:
    """Sign this person in on this browser (a fresh session: nothing from before carries on)."""
    session.clear()
    login_user(SignedIn(user))
    session.permanent = True
    now = int(time.time())
    session[SIGNED_IN_AT] = now
    session[SEEN_AT] = now


def end_session() -> None:
    logout_user()
    session.clear()


def signed_in() -> SignedIn | None:
    """The signed-in person behind this request, if any (their account is read afresh)."""
    if not hasattr(current_app, "login_manager"):
        return None
    user = current_user._get_current_object()
    return user if isinstance(user, SignedIn) else None


def session_principal() -> Principal | None:
    """The signed-in person as a caller, with the scopes of their role."""
    person = signed_in()
    return person.principal if person is not None else None


def _expire_session() -> None:
    if "_user_id" not in session:
        return
    now = int(time.time())
    started = session.get(SIGNED_IN_AT, 0)
    seen = session.get(SEEN_AT, 0)
    if now - seen > IDLE.total_seconds() or now - started > ABSOLUTE.total_seconds():
        end_session()
        g.session_expired = True
        return
    if now - seen >= SEEN_RESOLUTION:
        session[SEEN_AT] = now


def _protect_from_forgery() -> None:
    if request.method in SAFE_METHODS:
        return
    if any(request.headers.get(name) for name in CREDENTIAL_HEADERS):
        return
    if request.path.startswith(MACHINE_PREFIXES) and session_principal() is None:
        return  # no credential at all: the view answers 401
    csrf.protect()
