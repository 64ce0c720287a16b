"""People's accounts: create, list and disable them; sign in with a password or an OpenID
Connect identity. Functions here add to the caller's transaction; the caller commits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mecc.admin.audit import record
from mecc.admin.keys import ALL_ORGANISATIONS, Principal
from mecc.people import passwords, roles
from mecc.platform.db import utcnow
from mecc.store.models import User

USER_PREFIX = "user:"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ODS = re.compile(r"^[A-Z0-9]{3,10}$")
NOT_RECOGNISED = "The email address or password is not right."


class AccountError(ValueError):
    """An account cannot be created or changed as asked."""


class SignInRefused(Exception):
    """Sign-in refused; the message is safe to show the person."""


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise AccountError(f"{email!r} is not an email address")
    return value


def normalise_organisation(organisation: str) -> str:
    value = organisation.strip().upper()
    if value != ALL_ORGANISATIONS and not _ODS.match(value):
        raise AccountError("organisation must be an ODS code or '*'")
    return value


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def create_user(session: Session, *, email: str, name: str, role: str, organisation: str,
                password: str | None = None, actor: str = "cli") -> User:
    """A new account; without a password the person signs in only through OpenID Connect."""
    email = normalise_email(email)
    organisation = normalise_organisation(organisation)
    if role not in roles.ROLES:
        raise AccountError(f"unknown role {role!r}; choose from {', '.join(roles.ROLES)}")
    name = name.strip()
    if not name or len(name) > 100:
        raise AccountError("name must be 1-100 characters")
    if find_user(session, email) is not None:
        raise AccountError(f"there is already an account for {email}")
    try:
        password_hash = passwords.hash_password(password) if password is not None else None
    except passwords.WeakPassword as exc:
        raise AccountError(str(exc)) from None
    user = User(email=email, name=name, role=role, organisation=organisation,
                password_hash=password_hash)
    session.add(user)
    session.flush()
    record(session, actor=actor, entity="user", key=user.id, action="created",
           detail={"email": email, "name": name, "role": role, "organisation": organisation,
                   "password": password_hash is not None})
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def disable_user(session: Session, email: str, *, actor: str = "cli") -> User | None:
    """Disable an account (its sessions stop at their next request); None if there is none."""
    user = find_user(session, email)
    if user is None:
        return None
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        record(session, actor=actor, entity="user", key=user.id, action="disabled",
               detail={"email": user.email})
    return user


def principal_of(user: User) -> Principal:
    """The signed-in person as a caller: the scopes of their role, for their organisation."""
    return Principal(key_id=USER_PREFIX + user.id, name=user.name,
                     organisation=user.organisation, scopes=roles.scopes_for(user.role),
                     kind="user", email=user.email)


def active_user(session: Session, user_id: str) -> User | None:
    """The account behind a session, while it is enabled (read afresh on every request, so a
    disabled account or a changed role takes effect at once)."""
    user = session.get(User, user_id)
    if user is None or user.disabled_at is not None or user.role not in roles.ROLES:
        return None
    return user


def _signed_in(session: Session, user: User, method: str) -> User:
    user.last_signed_in_at = utcnow()
    record(session, actor=principal_of(user).actor, entity="user", key=user.id,
           action="signed_in", detail={"method": method})
    return user


def sign_in_with_password(session: Session, email: str, password: str) -> User:
    """The account whose password this is; SignInRefused otherwise (one message for an
    unknown address and a wrong password)."""
    try:
        user = find_user(session, normalise_email(email))
    except AccountError:
        user = None
    stored = user.password_hash if user is not None else None
    # Verify first, always: refusing an unknown address takes as long as a wrong password.
    if not passwords.verify(stored, password) or user is None or stored is None:
        raise SignInRefused(NOT_RECOGNISED)
    if user.disabled_at is not None:
        raise SignInRefused("This account has been disabled.")
    if passwords.needs_rehash(stored):
        user.password_hash = passwords.hash_password(password)
    return _signed_in(session, user, "password")


def claim_value(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (Keycloak's
    `realm_access.roles`)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def role_from_claims(claims: Mapping[str, Any], role_claim: str) -> str | None:
    """The role the provider asserts (the strongest of ours it names), or None when it sends
    no such claim. A claim naming none of our roles is refused."""
    value = claim_value(claims, role_claim)
    if value is None:
        return None
    if isinstance(value, str):
        names = value.split()  # some providers send one space-separated string
    elif isinstance(value, list):
        names = [v for v in value if isinstance(v, str)]
    else:
        names = []
    role = roles.strongest(names)
    if role is None:
        raise SignInRefused("Your organisation account has no MECC Prompts role "
                            f"({', '.join(roles.ROLES)}); ask your administrator for one.")
    return role


def sign_in_with_oidc(session: Session, claims: Mapping[str, Any], *, role_claim: str) -> User:
    """The account for a verified ID token's claims.

    The account must exist (an administrator binds each person to an organisation); it is
    found by the provider's subject, or at the first sign-in by email, when the subject is
    bound to it. A role claim, when the provider sends one, sets the person's role.
    """
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise SignInRefused("The sign-in service sent no subject.")
    user = session.scalar(select(User).where(User.oidc_subject == subject))
    if user is None:
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise SignInRefused("The sign-in service sent no email address.")
        if claims.get("email_verified") is False:
            raise SignInRefused("The sign-in service has not verified your email address.")
        user = find_user(session, email)
        if user is None:
            raise SignInRefused(f"There is no MECC Prompts account for {email.lower()}; ask "
                                "an administrator to add you.")
        if user.oidc_subject is not None:
            raise SignInRefused("This account is linked to another identity at the sign-in "
                                "service.")
        user.oidc_subject = subject
    if user.disabled_at is not None:
        raise SignInRefused("This account has been disabled.")
    role = role_from_claims(claims, role_claim)
    if role is not None and role != user.role:
        record(session, actor="openid-provider", entity="user", key=user.id,
               action="role_changed", detail={"from": user.role, "to": role})
        user.role = role
    return _signed_in(session, user, "oidc")
