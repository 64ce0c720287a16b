"""Roles and what they allow; reading roles from an OpenID provider's claims; how a person is
named; passwords; where a browser may be sent after signing in. No database needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mecc.admin.keys import SCOPES, Principal
from mecc.people import passwords, roles
from mecc.people.accounts import SignInRefused, claim_value, role_from_claims
from mecc.views.people import safe_next


def principal(role: str, organisation: str = "Y02345") -> Principal:
    return Principal(key_id="user:1", name="Ann Lead", organisation=organisation,
                     scopes=roles.scopes_for(role), kind="user", email="ann@example.org")


def test_each_role_adds_to_the_one_before() -> None:
    assert roles.scopes_for("viewer") == {"rules:read", "reports:read"}
    assert roles.scopes_for("rule_author") == {"rules:read", "reports:read", "rules:write"}
    assert roles.scopes_for("clinical_safety_officer") == {
        "rules:read", "reports:read", "rules:write", "rules:approve"}
    assert roles.scopes_for("admin") == set(SCOPES)


@pytest.mark.parametrize(("role", "allowed", "refused"), [
    ("viewer", {"rules:read", "reports:read"},
     {"rules:write", "rules:approve", "events:write", "prompts:read", "prompts:write"}),
    ("rule_author", {"rules:read", "rules:write", "reports:read"},
     {"rules:approve", "events:write", "prompts:read"}),
    ("clinical_safety_officer", {"rules:read", "rules:write", "rules:approve"},
     {"events:write", "prompts:read", "prompts:write"}),
    ("admin", set(SCOPES), set()),
])
def test_a_person_has_exactly_the_scopes_of_their_role(role: str, allowed: set[str],
                                                       refused: set[str]) -> None:
    person = principal(role)
    assert all(person.has_scope(s) for s in allowed)
    assert not any(person.has_scope(s) for s in refused)


def test_every_role_scope_is_a_scope_keys_have_too() -> None:
    for role in roles.ROLES:
        assert roles.scopes_for(role) <= set(SCOPES), role


def test_an_unknown_role_has_no_scopes() -> None:
    with pytest.raises(roles.UnknownRole):
        roles.scopes_for("superuser")


def test_a_person_is_bound_to_their_organisation_or_all() -> None:
    assert principal("viewer").may_access("Y02345")
    assert not principal("viewer").may_access("A81001")
    assert principal("viewer", "*").may_access("A81001")


def test_the_audit_log_names_a_person_by_name_and_email_and_a_key_by_its_id() -> None:
    assert principal("viewer").actor == "Ann Lead (ann@example.org)"
    key = Principal(key_id="k-1", name="emis-web", organisation="*",
                    scopes=frozenset({"events:write"}))
    assert key.actor == "emis-web (key k-1)"
    assert key.api_key_id == "k-1" and principal("admin").api_key_id is None


# ------------------------------------------------------------------------------ OIDC claims
@pytest.mark.parametrize(("claims", "role"), [
    ({"roles": ["viewer"]}, "viewer"),
    ({"roles": ["viewer", "clinical_safety_officer", "unrelated"]}, "clinical_safety_officer"),
    ({"roles": "rule_author"}, "rule_author"),
    ({"roles": "viewer admin"}, "admin"),
    ({"email": "x@example.org"}, None),  # no role claim: the account's own role stands
])
def test_the_strongest_known_role_in_the_claim_is_taken(claims: dict[str, object],
                                                         role: str | None) -> None:
    assert role_from_claims(claims, "roles") == role


def test_a_role_claim_naming_none_of_our_roles_is_refused() -> None:
    with pytest.raises(SignInRefused, match="no MECC Prompts role"):
        role_from_claims({"roles": ["Nurse", "Reader"]}, "roles")


def test_the_role_claim_may_be_a_path_into_nested_claims() -> None:
    claims = {"realm_access": {"roles": ["offline_access", "rule_author"]}}
    assert claim_value(claims, "realm_access.roles") == ["offline_access", "rule_author"]
    assert role_from_claims(claims, "realm_access.roles") == "rule_author"
    assert claim_value(claims, "realm_access.missing") is None
    assert claim_value({"a.b": 1}, "a.b") == 1  # a claim whose name has a dot


# ------------------------------------------------------------------------------ passwords
def test_passwords_are_argon2id_hashes_that_verify() -> None:
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse batterY")
    assert not passwords.verify(None, "correct horse battery")
    assert not passwords.verify("not a hash", "correct horse battery")
    assert not passwords.needs_rehash(stored)


@pytest.mark.parametrize("password", ["short", "x" * (passwords.MAX_LENGTH + 1)])
def test_new_passwords_must_have_a_sensible_length(password: str) -> None:
    with pytest.raises(passwords.WeakPassword):
        passwords.hash_password(password)


# ------------------------------------------------------------------------------ next
@pytest.mark.parametrize(("asked", "goes_to"), [
    ("/reports", "/reports"),
    ("/screen?organisation=Y02345", "/screen?organisation=Y02345"),
    (None, "/admin/rules"),
    ("", "/admin/rules"),
    ("https://evil.example/", "/admin/rules"),
    ("//evil.example/", "/admin/rules"),
    ("/\\evil.example/", "/admin/rules"),
    ("reports", "/admin/rules"),
    ("/reports\r\nSet-Cookie: x=1", "/admin/rules"),
])
def test_after_sign_in_only_paths_on_this_site_are_followed(asked: str | None,
                                                            goes_to: str) -> None:
    assert safe_next(asked) == goes_to


# ------------------------------------------------------------------------------ settings
def test_openid_connect_is_set_from_the_environment(tmp_path: Path) -> None:
    from mecc.platform.settings import Settings, SettingsError

    env = {"MECC_VAR_DIR": str(tmp_path), "MECC_SECRET_KEY": "s", "MECC_PSEUDONYM_KEY": "p"}
    assert Settings.from_env(env).oidc_issuer == ""
    assert Settings.from_env(env).oidc_role_claim == "roles"
    settings = Settings.from_env({
        **env, "MECC_OIDC_ISSUER": "https://login.example.nhs.uk/realms/mecc/",
        "MECC_OIDC_CLIENT_ID": "mecc", "MECC_OIDC_CLIENT_SECRET": "shh",
        "MECC_OIDC_ROLE_CLAIM": "realm_access.roles"})
    assert settings.oidc_issuer == "https://login.example.nhs.uk/realms/mecc"
    assert (settings.oidc_client_id, settings.oidc_client_secret) == ("mecc", "shh")
    assert settings.oidc_role_claim == "realm_access.roles"
    with pytest.raises(SettingsError, match="MECC_OIDC_CLIENT_ID"):
        Settings.from_env({**env, "MECC_OIDC_ISSUER": "https://login.example.nhs.uk"})
