"""Per-key rate limits (429 with Retry-After), counted in Redis so every API process agrees.

Flask-Limiter does the counting; if Redis is unreachable it falls back to per-process memory
rather than failing requests (accepting events matters more than exact limits).
"""

from __future__ import annotations

import hashlib

import jwt
from flask import Flask, request
from flask_limiter import Limiter

from mecc.platform.settings import Settings

# Routes that are never limited: probes, metrics and the long-lived stream.
EXEMPT_PREFIXES = ("/healthz", "/readyz", "/metrics", "/api/v1/stream", "/static")


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
    return request.path.startswith(EXEMPT_PREFIXES)


def init_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """The limiter; MECC_RATE_LIMIT=off turns off the per-key API limit only, never the limits
    on sign-in attempts (mecc.views.people)."""
    off = settings.rate_limit.lower() in ("", "off", "none")
    return Limiter(
        key_func=_client_key, app=app, default_limits=[] if off else [settings.rate_limit],
        default_limits_exempt_when=_exempt, storage_uri=settings.redis_url,
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 1},
        strategy="fixed-window", swallow_errors=True, in_memory_fallback_enabled=True,
        headers_enabled=True, retry_after="delta-seconds", key_prefix="mecc-rl",
    )
