"""API keys: random, prefixed, shown once, stored as a hash, scoped, bound to an organisation."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mecc.admin.audit import record
from mecc.platform.db import utcnow
from mecc.store.models import ApiKey

SCOPES = (
    "events:write", "prompts:read", "prompts:write", "rules:read", "rules:write",
    "rules:approve", "reports:read", "admin",
)
ALL_ORGANISATIONS = "*"
PREFIX = "mecc_"
_KEY = re.compile(r"^mecc_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{20,64})$")
_HOST = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?$")


class KeyCreationError(ValueError):
    """A key cannot be created as asked (bad scope, organisation or host)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key (or a signed-in person), its organisation and scopes.

    A person's `key_id` is "user:<id>": one identity string for every check that compares
    callers (e.g. the requester of a change never approving it).
    """

    key_id: str
    name: str
    organisation: str
    scopes: frozenset[str]
    callback_hosts: tuple[str, ...] = ()
    default_callback_url: str | None = None
    kind: str = "key"  # "key" | "user"
    email: str | None = None

    @property
    def is_all_organisations(self) -> bool:
        return self.organisation == ALL_ORGANISATIONS

    @property
    def actor(self) -> str:
        """How the audit log names this caller: the person (name and email), or the key."""
        if self.kind == "user":
            return f"{self.name} ({self.email})"
        return f"{self.name} (key {self.key_id})"

    @property
    def api_key_id(self) -> str | None:
        """The API key row behind this caller, if it is one (events remember their key)."""
        return self.key_id if self.kind == "key" else None

    def may_access(self, organisation: str) -> bool:
        return self.is_all_organisations or organisation == self.organisation

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class CreatedKey:
    id: str
    key: str
    webhook_secret: str


def _hash(secret: str) -> str:
    # Keys carry 190+ bits of randomness: a fast hash is safe, and checks stay cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, *, name: str, organisation: str, scopes: list[str],
               callback_hosts: list[str] | None = None, default_callback_url: str | None = None,
               actor: str = "cli") -> CreatedKey:
    """Create a key (caller commits). The plaintext key and webhook secret exist only here."""
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise KeyCreationError(f"unknown scopes {bad}; choose from {', '.join(SCOPES)}" if bad
                        else "give at least one scope")
    organisation = organisation.strip().upper() if organisation != ALL_ORGANISATIONS else "*"
    if organisation != ALL_ORGANISATIONS and not re.fullmatch(r"[A-Z0-9]{3,10}", organisation):
        raise KeyCreationError("organisation must be an ODS code or '*'")
    hosts = [h.strip().lower() for h in callback_hosts or []]
    for host in hosts:
        if not _HOST.match(host):
            raise KeyCreationError(f"callback host {host!r} is not HOST or HOST:PORT")
    if not name.strip() or len(name) > 100:
        raise KeyCreationError("name must be 1-100 characters")
    lookup = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    plaintext = f"{PREFIX}{lookup}_{secret}"
    webhook_secret = "whsec_" + secrets.token_urlsafe(32).replace("-", "A").replace("_", "B")
    row = ApiKey(name=name.strip(), lookup=lookup, key_hash=_hash(plaintext),
                 organisation=organisation, scopes=sorted(set(scopes)), callback_hosts=hosts,
                 default_callback_url=default_callback_url, webhook_secret=webhook_secret)
    session.add(row)
    session.flush()
    record(session, actor=actor, entity="key", key=row.id, action="created",
           detail={"name": row.name, "organisation": organisation, "scopes": row.scopes,
                   "callback_hosts": hosts})
    return CreatedKey(id=row.id, key=plaintext, webhook_secret=webhook_secret)


def authenticate(session: Session, presented: str) -> Principal | None:
    """The principal for a presented key, or None (unknown, malformed or revoked)."""
    match = _KEY.match(presented)
    if not match:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.lookup == match.group(1)))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _hash(presented)):
        return None
    return principal_of(row)


def principal_of(row: ApiKey) -> Principal:
    return Principal(key_id=row.id, name=row.name, organisation=row.organisation,
                     scopes=frozenset(row.scopes), callback_hosts=tuple(row.callback_hosts or ()),
                     default_callback_url=row.default_callback_url)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id: str, *, actor: str = "cli") -> datetime | None:
    """Revoke (caller commits); returns when, or None if there is no such key."""
    row = session.get(ApiKey, key_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record(session, actor=actor, entity="key", key=row.id, action="revoked", detail={})
    return row.revoked_at
