"""Roles: what a signed-in person may do, as the same scopes API keys carry.

Each role adds to the one before it, so a role is read as "everything a <lesser role> may do,
and ...". The scopes themselves are listed once, in mecc.admin.keys.SCOPES.
"""

from __future__ import annotations

from mecc.admin.keys import SCOPES

VIEWER = frozenset({"rules:read", "reports:read"})
RULE_AUTHOR = VIEWER | {"rules:write"}
CLINICAL_SAFETY_OFFICER = RULE_AUTHOR | {"rules:approve"}
# `admin` also manages people (`mecc users ...`); the scope covers every other one.
ADMIN = frozenset(SCOPES)

ROLES: dict[str, frozenset[str]] = {
    "viewer": VIEWER,
    "rule_author": RULE_AUTHOR,
    "clinical_safety_officer": CLINICAL_SAFETY_OFFICER,
    "admin": ADMIN,
}
LABELS = {
    "viewer": "viewer",
    "rule_author": "rule author",
    "clinical_safety_officer": "clinical safety officer",
    "admin": "administrator",
}


class UnknownRole(ValueError):
    """A role name that is not one of ROLES."""


def scopes_for(role: str) -> frozenset[str]:
    try:
        return ROLES[role]
    except KeyError:
        raise UnknownRole(f"unknown role {role!r}; choose from {', '.join(ROLES)}") from None


def strongest(names: list[str]) -> str | None:
    """The role with the most scopes among `names` (an OpenID provider may send several);
    names that are not roles here are ignored."""
    known = [n for n in names if n in ROLES]
    if not known:
        return None
    return max(known, key=lambda n: list(ROLES).index(n))
