"""Stream tokens: signed, short-lived, bound to the key's organisation and a filter."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from mecc.admin.keys import Principal
from mecc.delivery import hub, tokens
from mecc.platform.errors import NotFound, Unauthorized, ValidationFailed

SECRET = "unit-test-secret"
NOW = 1_800_000_000


def principal(organisation: str = "Y02345", *scopes: str) -> Principal:
    return Principal(key_id="key-1", name="emis", organisation=organisation,
                     scopes=frozenset(scopes or ("prompts:read", "prompts:write")))


def token_for(p: Principal, flt: tokens.StreamFilter, *, ttl: int = 900, now: int = NOW) -> str:
    return tokens.sign_grant(SECRET, tokens.new_grant(p, flt, ttl=ttl, now=now))


def test_a_token_carries_its_key_filter_and_expiry() -> None:
    flt = tokens.StreamFilter("Y02345", "blue", "st-991")
    grant = tokens.read_grant(SECRET, token_for(principal(), flt), now=NOW + 10)
    assert grant.key_id == "key-1"
    assert grant.filter == flt
    assert grant.may_write is True
    assert grant.expires_at == NOW + 900
    assert grant.expires_at_iso == "2027-01-15T08:15:00Z"


def test_a_read_only_key_gives_a_read_only_token() -> None:
    flt = tokens.StreamFilter("Y02345")
    grant = tokens.read_grant(SECRET, token_for(principal("Y02345", "prompts:read"), flt),
                              now=NOW)
    assert grant.may_write is False


@pytest.mark.parametrize("offset", [900, 901, 100_000])
def test_an_expired_token_is_refused(offset: int) -> None:
    token = token_for(principal(), tokens.StreamFilter("Y02345"))
    with pytest.raises(Unauthorized, match="expired"):
        tokens.read_grant(SECRET, token, now=NOW + offset)


def test_a_token_is_good_until_just_before_it_expires() -> None:
    token = token_for(principal(), tokens.StreamFilter("Y02345"))
    assert tokens.read_grant(SECRET, token, now=NOW + 899).filter.organisation == "Y02345"


def _flip(token: str, at: int) -> str:
    swapped = "A" if token[at] != "A" else "B"
    return token[:at] + swapped + token[at + 1:]


@pytest.mark.parametrize("where", ["payload", "signature"])
def test_a_tampered_token_is_refused(where: str) -> None:
    token = token_for(principal(), tokens.StreamFilter("Y02345"))
    at = 3 if where == "payload" else len(token) - 3
    with pytest.raises(Unauthorized, match="not valid"):
        tokens.read_grant(SECRET, _flip(token, at), now=NOW)


def test_a_token_rewritten_for_another_organisation_is_refused() -> None:
    # Re-signing a changed payload needs the secret; without it the signature fails.
    token = token_for(principal(), tokens.StreamFilter("Y02345"))
    forged = URLSafeTimedSerializer("guessed-secret", salt=tokens.TOKEN_SALT).dumps(
        {"k": "key-1", "o": "B86001", "t": None, "s": None, "w": True, "e": NOW + 900,
         "i": NOW})
    assert forged != token
    with pytest.raises(Unauthorized):
        tokens.read_grant(SECRET, forged, now=NOW)


@pytest.mark.parametrize("junk", ["", "x", "a.b.c", "eyJrIjoxfQ.AAAA.BBBB"])
def test_junk_is_refused(junk: str) -> None:
    with pytest.raises(Unauthorized):
        tokens.read_grant(SECRET, junk, now=NOW)


def test_another_purpose_signed_with_the_same_secret_is_refused() -> None:
    # The salt separates stream tokens from anything else signed with MECC_SECRET_KEY.
    other = URLSafeTimedSerializer(SECRET, salt="something-else").dumps(
        {"k": "key-1", "o": "Y02345", "t": None, "s": None, "w": True, "e": NOW + 900,
         "i": NOW})
    with pytest.raises(Unauthorized):
        tokens.read_grant(SECRET, other, now=NOW)


def test_a_key_cannot_have_a_token_for_another_organisation() -> None:
    with pytest.raises(NotFound):
        tokens.new_grant(principal("Y02345"), tokens.StreamFilter("B86001"), ttl=900, now=NOW)


def test_resolve_filter_binds_an_organisation_key_to_its_own() -> None:
    p = principal("Y02345")
    assert tokens.resolve_filter(p, None, None, None) == tokens.StreamFilter("Y02345")
    assert tokens.resolve_filter(p, "y02345", "blue", None) == tokens.StreamFilter(
        "Y02345", "blue")
    with pytest.raises(NotFound):
        tokens.resolve_filter(p, "B86001", None, None)


def test_an_all_organisations_key_must_name_one() -> None:
    p = principal("*")
    with pytest.raises(ValidationFailed) as caught:
        tokens.resolve_filter(p, None, None, None)
    assert "organisation" in caught.value.errors
    assert tokens.resolve_filter(p, "B86001", None, "st-1") == tokens.StreamFilter(
        "B86001", None, "st-1")


def test_a_bound_filter_narrows_but_never_widens() -> None:
    flt = tokens.StreamFilter("Y02345", "blue")
    assert flt.narrowed(None, "st-1") == tokens.StreamFilter("Y02345", "blue", "st-1")
    assert flt.narrowed("blue", None) == flt
    with pytest.raises(NotFound):
        flt.narrowed("red", None)


@pytest.mark.parametrize(("message", "seen"), [
    (("Y02345", "blue", "st-1"), True),
    (("Y02345", "blue", None), False),
    (("Y02345", "red", "st-1"), False),
    (("B86001", "blue", "st-1"), False),
])
def test_filter_matching(message: tuple[str, str | None, str | None], seen: bool) -> None:
    assert tokens.StreamFilter("Y02345", "blue", "st-1").matches(*message) is seen


def test_renewal_keeps_the_filter_and_stops_at_the_end_of_the_session() -> None:
    grant = tokens.new_grant(principal(), tokens.StreamFilter("Y02345", "blue"), ttl=900,
                             now=NOW)
    later = tokens.renewed(grant, ttl=900, session_seconds=3600, now=NOW + 600)
    assert later.filter == grant.filter and later.key_id == grant.key_id
    assert later.expires_at == NOW + 1500
    assert later.session_started == NOW
    last = tokens.renewed(later, ttl=900, session_seconds=3600, now=NOW + 3000)
    assert last.expires_at == NOW + 3600  # never past the session
    with pytest.raises(Unauthorized, match="session has ended"):
        tokens.renewed(last, ttl=900, session_seconds=3600, now=NOW + 3600)


def test_frames_are_encoded_once_in_sse_form() -> None:
    frame = hub.Frame.from_announcement(
        '{"id": 7, "event": "prompt", "organisation": "Y02345", "team": null, '
        '"staff_id": "st-1", "data": {"id": "p1", "summary": "two\\nlines"}}')
    assert frame is not None
    assert frame.wire == ('id: 7\nevent: prompt\n'
                          'data: {"id": "p1", "summary": "two\\nlines"}\n\n')
    assert hub.Frame.from_announcement("not json") is None
    assert hub.Frame.from_announcement('{"id": "x"}') is None


def test_every_outcome_has_a_button_label() -> None:
    from mecc.clinical.domain import OUTCOMES
    from mecc.views.screen import OUTCOME_LABELS

    assert list(OUTCOME_LABELS) == list(OUTCOMES)
