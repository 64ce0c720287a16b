"""Registered CDS clients: adding, listing and removing them, and authenticating a call
(a registered client's JWT, or an API key)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mecc.admin.audit import record
from mecc.admin.keys import ALL_ORGANISATIONS, Principal
from mecc.admin.keys import authenticate as key_principal
from mecc.interop import fhir
from mecc.interop.cds.jwt import (
    LEEWAY,
    MAX_TOKEN_AGE,
    JwksError,
    parse_jwks,
    unverified_claims,
    verify_jwt,
)
from mecc.interop.cds.services import IDENT
from mecc.platform.db import utcnow
from mecc.platform.errors import Forbidden, ServiceUnavailable, Unauthorized
from mecc.platform.runtime import Runtime
from mecc.store.models import CdsClient, UsedJti

log = logging.getLogger(__name__)

ODS = re.compile(r"^[A-Z0-9]{3,10}$")
FHIR_HOST = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class Caller:
    """Who called: a principal for intake and outcomes, and the source its events carry."""

    principal: Principal
    source: str
    client_id: str | None = None  # a CDS client (JWT); None for an API key
    fhir_servers: tuple[str, ...] = ()  # where missing prefetch may be fetched from


def register_client(session: Session, *, iss: str, jwks: Any, organisation: str,
                    actor: str = "cli", fhir_servers: Sequence[str] = ()
                    ) -> tuple[CdsClient, bool]:
    """Add or update (key rotation) a client; (row, created). Caller commits.

    `fhir_servers`: the hosts (HOST or HOST:PORT) its calls' `fhirServer` may name; the service
    fetches missing prefetch only from these (and never from a private address unless the
    address itself, or `localhost` for loopback, is listed: the webhook SSRF rules)."""
    iss = iss.strip()
    if not iss or len(iss) > 255 or not IDENT.match(iss):
        raise JwksError("iss must be 1-255 characters without spaces")
    organisation = organisation.strip().upper() if organisation != ALL_ORGANISATIONS else "*"
    if organisation != ALL_ORGANISATIONS and not ODS.match(organisation):
        raise JwksError("organisation must be an ODS code or '*'")
    parse_jwks(jwks)
    servers = [h.strip().lower() for h in fhir_servers if h.strip()]
    bad = [h for h in servers if not FHIR_HOST.match(h)]
    if bad:
        raise JwksError(f"fhir servers are HOST or HOST:PORT (no scheme or path): {bad}")
    row = session.scalar(select(CdsClient).where(CdsClient.iss == iss))
    created = row is None
    if row is None:
        row = CdsClient(iss=iss, jwks=dict(jwks), organisation=organisation, created_at=utcnow(),
                        fhir_servers=servers)
        session.add(row)
    else:
        row.jwks, row.organisation, row.fhir_servers = dict(jwks), organisation, servers
    session.flush()
    _origins.clear()  # this process sees the change at once; others within the cache time
    record(session, actor=actor, entity="cds_client", key=row.id,
           action="created" if created else "updated",
           detail={"iss": iss, "organisation": organisation, "fhir_servers": servers,
                   "kids": [k.get("kid") for k in jwks["keys"]]})
    return row, created


def list_clients(session: Session) -> list[CdsClient]:
    return list(session.scalars(select(CdsClient).order_by(CdsClient.created_at)))


def remove_client(session: Session, iss: str, *, actor: str = "cli") -> bool:
    row = session.scalar(select(CdsClient).where(CdsClient.iss == iss))
    if row is None:
        return False
    record(session, actor=actor, entity="cds_client", key=row.id, action="removed",
           detail={"iss": iss})
    session.delete(row)
    return True


def _remember_jti(runtime: Runtime, iss: str, claims: Mapping[str, Any]) -> None:
    """Record the jti; a second use of it is a replay. Rows go once the token is dead anyway."""
    dies = min(claims["exp"] + LEEWAY, claims["iat"] + MAX_TOKEN_AGE + 2 * LEEWAY)
    keep_until = datetime.fromtimestamp(max(dies, time.time()), UTC)
    with runtime.db.session() as session:
        session.execute(delete(UsedJti).where(UsedJti.exp < utcnow()))
        session.add(UsedJti(iss=iss, jti=claims["jti"], exp=keep_until))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise Unauthorized("This JWT (its jti) has been used before; replays are "
                               "refused.") from None


def authenticate(runtime: Runtime, token: str, *, audience: str | None,
                 scopes: Sequence[str]) -> Caller:
    """An API key (with one of `scopes`) or a registered client's JWT for this audience.

    `audience` None: this server does not know the URL it is called at (no MECC_PUBLIC_URL),
    so no JWT can be checked against it; only API keys are taken.
    """
    if token.startswith("mecc_"):
        with runtime.db.session() as session:
            principal = key_principal(session, token)
        if principal is None:
            raise Unauthorized("The API key is not valid or has been revoked.")
        if not any(principal.has_scope(s) for s in scopes):
            raise Forbidden("This API key lacks the " + " or ".join(
                f"'{s}'" for s in scopes) + " scope.")
        return Caller(principal, fhir.slug_source(principal.name))
    if audience is None:
        log.warning("a CDS client JWT was refused: MECC_PUBLIC_URL is not set")
        raise ServiceUnavailable("This server cannot check CDS client tokens yet: its public "
                                 "URL (MECC_PUBLIC_URL) is not configured.", retry_after=300)
    _, unverified = unverified_claims(token)
    iss = unverified.get("iss")
    if not isinstance(iss, str) or not iss:
        raise Unauthorized("The JWT has no iss.")
    with runtime.db.session() as session:
        client = session.scalar(select(CdsClient).where(CdsClient.iss == iss))
        if client is None:
            raise Unauthorized("The JWT's iss is not a registered CDS client.")
        client_id, organisation, jwks = client.id, client.organisation, client.jwks
        fhir_servers = tuple(client.fhir_servers or ())
    try:
        keys = parse_jwks(jwks)
    except JwksError:
        log.warning("unusable JWKS registered", extra={"iss": iss})
        raise Unauthorized("The keys registered for this issuer are unusable.") from None
    claims = verify_jwt(token, keys, issuer=iss, audience=audience)
    _remember_jti(runtime, iss, claims)
    principal = Principal(key_id=f"cds:{client_id}", name=iss, organisation=organisation,
                          scopes=frozenset({"events:write", "prompts:write"}))
    return Caller(principal, fhir.slug_source(iss), client_id, fhir_servers)


# A browser-based EHR calls from its own origin; the registered issuers' origins are asked for
# at most this often per process (a new client is allowed within this long).
ORIGINS_CACHE_SECONDS = 10.0
_origins: dict[str, tuple[float, frozenset[str]]] = {}  # by database URL


def origin_of(iss: str) -> str | None:
    """scheme://host[:port] of an issuer that is an http(s) URL, else None."""
    parts = urlsplit(iss)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"


def allowed_origins(runtime: Runtime) -> frozenset[str]:
    """The browser origins CDS calls may come from: those of the registered clients' issuers."""
    checked_at, origins = _origins.get(runtime.db.url, (0.0, frozenset()))
    if time.monotonic() - checked_at < ORIGINS_CACHE_SECONDS:
        return origins
    with runtime.db.session() as session:
        issuers = list(session.scalars(select(CdsClient.iss)))
    origins = frozenset(o for o in map(origin_of, issuers) if o)
    _origins[runtime.db.url] = (time.monotonic(), origins)
    return origins


def expected_audience(base_url: str, public_url: str | None, path: str) -> str:
    """The `aud` a client must have used: the URL called, without its query string.

    Behind a proxy that rewrites scheme or host, set MECC_PUBLIC_URL to the public base URL.
    """
    if public_url:
        return public_url.rstrip("/") + path
    return base_url
