"""Stream tokens: how a staff screen, which cannot send headers, is allowed to stream.

EventSource cannot send an Authorization header, so a key with `prompts:read` exchanges itself
for a short-lived token signed with MECC_SECRET_KEY (itsdangerous, which Flask already ships: no
second crypto dependency and no algorithm choice to get wrong). The token names the key, so a
revoked key stops streaming at its next connect, and the filter (organisation, team, member of
staff) it may read. Renewals extend a token up to the end of the screen's session (a shift).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.platform.errors import NotFound, Unauthorized, ValidationFailed
from mecc.platform.runtime import Runtime
from mecc.store.models import ApiKey, Event, Prompt

TOKEN_SALT = "mecc.stream-token.v1"  # noqa: S105 - a salt (domain separation), not a secret


@dataclass(frozen=True)
class StreamFilter:
    """Which messages a client sees: one organisation, optionally one team and one member of
    staff, and optionally one person (`person_id`, within `source` when given) or one contact
    (`event`), for a screen opened beside the record a clinical system has open."""

    organisation: str
    team: str | None = None
    staff_id: str | None = None
    person_id: str | None = None
    source: str | None = None
    event: str | None = None

    def matches(self, organisation: str | None, team: str | None, staff_id: str | None,
                person_id: str | None = None, source: str | None = None,
                event: str | None = None) -> bool:
        return (organisation == self.organisation
                and (self.team is None or team == self.team)
                and (self.staff_id is None or staff_id == self.staff_id)
                and (self.person_id is None or person_id == self.person_id)
                and (self.source is None or source == self.source)
                and (self.event is None or event == self.event))

    @property
    def in_context(self) -> bool:
        """Narrowed to one person or one contact."""
        return self.person_id is not None or self.event is not None

    def narrowed(self, team: str | None, staff_id: str | None) -> StreamFilter:
        """Narrow a bound filter further; asking for what it excludes reveals nothing (404)."""
        for asked, bound, what in ((team, self.team, "team"),
                                   (staff_id, self.staff_id, "member of staff")):
            if asked is not None and bound is not None and asked != bound:
                raise NotFound(f"This token does not cover that {what}.")
        return replace(self, team=self.team if self.team is not None else team,
                       staff_id=self.staff_id if self.staff_id is not None else staff_id)


def resolve_filter(principal: Principal, organisation: str | None, team: str | None,
                   staff_id: str | None) -> StreamFilter:
    """The filter a key may ask for: its own organisation, or any one for a '*' key."""
    if organisation is None:
        if principal.is_all_organisations:
            raise ValidationFailed(
                "A key for all organisations must name the organisation to stream.",
                errors={"organisation": ["Required for a key that covers all organisations."]})
        organisation = principal.organisation
    organisation = organisation.strip().upper()
    if not principal.may_access(organisation):
        raise NotFound(f"No organisation {organisation} visible to this key.")
    return StreamFilter(organisation, team or None, staff_id or None)


@dataclass(frozen=True)
class StreamGrant:
    """What a stream token allows: read (and, if its key could, record outcomes) for a filter."""

    key_id: str
    filter: StreamFilter
    may_write: bool
    expires_at: int  # epoch seconds
    session_started: int  # epoch seconds of the first token in a chain of renewals

    @property
    def expires_at_iso(self) -> str:
        return datetime.fromtimestamp(self.expires_at, UTC).isoformat().replace("+00:00", "Z")


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=TOKEN_SALT)


def new_grant(principal: Principal, flt: StreamFilter, *, ttl: int,
              now: float | None = None) -> StreamGrant:
    if not principal.may_access(flt.organisation):
        raise NotFound(f"No organisation {flt.organisation} visible to this key.")
    issued = int(now if now is not None else time.time())
    return StreamGrant(key_id=principal.key_id, filter=flt,
                       may_write=principal.has_scope("prompts:write"),
                       expires_at=issued + ttl, session_started=issued)


def renewed(grant: StreamGrant, *, ttl: int, session_seconds: int,
            now: float | None = None) -> StreamGrant:
    """The same grant for another `ttl`, never past the end of the session."""
    now_s = int(now if now is not None else time.time())
    ends = grant.session_started + session_seconds
    if now_s >= ends:
        raise Unauthorized("This screen session has ended; open the screen again from the "
                           "clinical system.")
    return StreamGrant(grant.key_id, grant.filter, grant.may_write,
                       min(now_s + ttl, ends), grant.session_started)


def sign_grant(secret: str, grant: StreamGrant) -> str:
    f = grant.filter
    claims: dict[str, Any] = {
        "k": grant.key_id, "o": f.organisation, "t": f.team, "s": f.staff_id,
        "w": grant.may_write, "e": grant.expires_at, "i": grant.session_started}
    # Only when narrowed, so that a screen's tokens are no longer than they need to be.
    claims.update({name: value for name, value in (("p", f.person_id), ("r", f.source),
                                                   ("v", f.event)) if value is not None})
    return str(_serializer(secret).dumps(claims))


def read_grant(secret: str, token: str, *, now: float | None = None) -> StreamGrant:
    """The grant a token carries; 401 when it was not signed by us or has expired."""
    try:
        raw = _serializer(secret).loads(token)
        grant = StreamGrant(key_id=str(raw["k"]),
                            filter=StreamFilter(str(raw["o"]), raw["t"], raw["s"],
                                                raw.get("p"), raw.get("r"), raw.get("v")),
                            may_write=bool(raw["w"]), expires_at=int(raw["e"]),
                            session_started=int(raw["i"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        raise Unauthorized("The stream token is not valid.") from None
    if (now if now is not None else time.time()) >= grant.expires_at:
        raise Unauthorized("The stream token has expired; ask for a new one.")
    return grant


def key_principal(session: Session, key_id: str) -> Principal | None:
    """The issuing key while it is not revoked; or the person who opened /screen signed in,
    while their account is enabled."""
    from mecc.admin.keys import principal_of
    from mecc.people import accounts

    if key_id.startswith(accounts.USER_PREFIX):
        user = accounts.active_user(session, key_id.removeprefix(accounts.USER_PREFIX))
        return accounts.principal_of(user) if user is not None else None
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    return principal_of(row)


def authenticate_token(runtime: Runtime, token: str) -> tuple[StreamGrant, Principal]:
    """A grant and the principal it acts as: the issuing key, narrowed to the grant.

    The key is read afresh on every connect, so a revoked key stops streaming at the next
    reconnect and a token never carries more than its key still has.
    """
    grant = read_grant(runtime.settings.secret_key, token)
    with runtime.db.session() as session:
        key = key_principal(session, grant.key_id)
    if key is None or not key.has_scope("prompts:read") \
            or not key.may_access(grant.filter.organisation):
        raise Unauthorized("The key behind this stream token has been revoked or changed.")
    scopes = {"prompts:read"}
    if grant.may_write and key.has_scope("prompts:write"):
        scopes.add("prompts:write")
    return grant, replace(key, organisation=grant.filter.organisation, scopes=frozenset(scopes),
                          callback_hosts=(), default_callback_url=None)


def check_prompt_in_grant(runtime: Runtime, grant: StreamGrant, prompt_id: str) -> None:
    """A token may act only on the prompts its screen could show."""
    with runtime.db.session() as session:
        prompt = session.get(Prompt, prompt_id)
        if prompt is None or not grant.filter.matches(prompt.organisation, prompt.team,
                                                      prompt.staff_id, prompt.person_id,
                                                      prompt.source, prompt.event_id):
            raise NotFound("No prompt with this id.")


def in_context(runtime: Runtime, flt: StreamFilter, *, person_id: str | None,
               source: str | None, event: str | None) -> StreamFilter:
    """Narrow a filter to one person (within one source, when named) or to one contact.

    A contact must be one of the filter's organisation (else 404, revealing nothing); with it,
    the person and source are the contact's own, and naming another person is a 422.
    """
    if event is None:
        if source is not None and person_id is None:
            message = "Give person_id with source: a token narrows to a person, not a source."
            raise ValidationFailed(message, errors={"person_id": [message]})
        return replace(flt, person_id=person_id, source=source)
    with runtime.db.session() as session:
        row = session.get(Event, event)
        if row is None or row.organisation != flt.organisation:
            raise NotFound("No contact with this id.")
        if person_id is not None and person_id != row.person_id:
            message = "This contact is another person's."
            raise ValidationFailed(message, errors={"person_id": [message]})
        if source is not None and source != row.source:
            message = "This contact came from another source."
            raise ValidationFailed(message, errors={"source": [message]})
        return replace(flt, person_id=row.person_id, source=row.source, event=row.id)


def issue(runtime: Runtime, principal: Principal, asked: Mapping[str, Any], *,
          ttl: int) -> tuple[str, StreamGrant]:
    """A signed token, and its grant, for what `asked` names (organisation, team, staff_id,
    person_id, source, event: each optional but the organisation of a '*' key), within what
    the principal may see."""
    flt = resolve_filter(principal, asked.get("organisation"), asked.get("team") or None,
                         asked.get("staff_id") or None)
    event = asked.get("event")
    flt = in_context(runtime, flt, person_id=asked.get("person_id") or None,
                     source=asked.get("source") or None, event=str(event) if event else None)
    grant = new_grant(principal, flt, ttl=ttl)
    return sign_grant(runtime.settings.secret_key, grant), grant
