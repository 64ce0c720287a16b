"""Rate limits (429 with Retry-After), counted in Redis so every API process agrees.

- Per key: each presented credential has its budget (MECC_RATE_LIMIT).
- Failed authentication per client address (MECC_AUTH_FAILURE_LIMIT): a key, JWT or stream
  token that is refused costs a database lookup, and a caller changing the key on each try
  would never meet the per-key limit. Once an address has used its failures, everything it
  sends is refused until the window ends.

Flask-Limiter does the counting; if Redis is unreachable it falls back to per-process memory
rather than failing requests (accepting events matters more than exact limits). It would also
put `Retry-After` on every answer; that header means "come back later" and goes only with 429
and 503.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import jwt
from flask import Flask, Response, request
from flask_limiter import ApplicationLimit, Limiter

from mecc.platform.settings import Settings

# Routes that are never limited: probes, metrics and the long-lived stream itself (exactly
# these paths: /api/v1/stream-tokens and /api/v1/stream/recent are ordinary requests).
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/v1/stream"})
EXEMPT_PREFIXES = ("/static/",)
# The credentials a request can present; a 401 to one of them is a failed authentication.
_CREDENTIAL_HEADERS = ("Authorization", "X-Stream-Token")


def _client_key() -> str:
    """The presented credential (hashed), so each API key has its own budget.

    CDS Hooks clients send a fresh JWT with every call: they are counted by issuer and client
    address instead (the issuer is read unverified here; the view verifies it). The address is
    part of the key so that forged tokens naming an issuer cannot spend that issuer's budget.
    """
    header = request.headers.get("Authorization", "")
    token = header.partition(" ")[2].strip()
    if token.count(".") == 2:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            issuer = None
        if isinstance(issuer, str):
            who = f"{issuer}|{request.remote_addr}"
            return "iss:" + hashlib.sha256(who.encode()).hexdigest()[:24]
    if header:
        return "key:" + hashlib.sha256(header.encode()).hexdigest()[:24]
    return "ip:" + (request.remote_addr or "unknown")


def _exempt() -> bool:
    return request.path in EXEMPT_PATHS or request.path.startswith(EXEMPT_PREFIXES)


def _client_address() -> str:
    return "addr:" + (request.remote_addr or "unknown")


def _presented_credentials() -> bool:
    return any(request.headers.get(h) for h in _CREDENTIAL_HEADERS) or bool(
        request.args.get("token"))


def _authentication_failed(response: Response) -> bool:
    return response.status_code == 401 and _presented_credentials()


def _retry_after_only_when_it_means_something(response: Response) -> Response:
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def init_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """The limiter; MECC_RATE_LIMIT=off turns off the per-key API limit only, never the limits
    on sign-in attempts (mecc.views.people)."""
    off = settings.rate_limit.lower() in ("", "off", "none")
    failures_off = settings.auth_failure_limit.lower() in ("", "off", "none")
    failures: list[str | Callable[[], str] | ApplicationLimit] = [] if failures_off else [
        ApplicationLimit(settings.auth_failure_limit, key_function=_client_address,
                         scope="failed-auth", deduct_when=_authentication_failed,
                         exempt_when=_exempt,
                         error_message="Too many failed authentication attempts from this "
                                       "address.")]
    limiter = Limiter(
        key_func=_client_key, app=app, default_limits=[] if off else [settings.rate_limit],
        default_limits_exempt_when=_exempt, application_limits=failures,
        storage_uri=settings.redis_url,
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 1},
        strategy="fixed-window", swallow_errors=True, in_memory_fallback_enabled=True,
        headers_enabled=True, retry_after="delta-seconds", key_prefix="mecc-rl",
    )
    # Flask calls after-request functions last-registered first; placed at the front, this
    # one runs after the limiter's, which sets the header.
    app.after_request_funcs.setdefault(None, []).insert(
        0, _retry_after_only_when_it_means_something)
    return limiter
