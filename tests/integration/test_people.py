"""People who sign in: accounts made with `mecc users`, password sign-in, sessions that end,
CSRF tokens on every state-changing page request, limits on failed attempts, the audit log
naming the person, and /screen for a signed-in person. (OpenID Connect: test_oidc.py.)"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mecc.cli import main
from mecc.people import accounts, sessions
from mecc.store.models import Rule, User
from tests.support.factories import assert_problem, auth_header
from tests.support.people import PASSWORD, add_person

RULE = {"key": "people-test-rule", "title": "A rule made by a person", "topic": "smoking",
        "kind": "lifestyle_conversation", "when": "age >= 18", "priority": 5,
        "prompt": {"summary": "Ask about smoking", "detail": "Ask.", "indicator": "info"}}


@pytest.fixture
def add_user(app: Any) -> Any:
    def factory(email: str = "ann.lead@example.org", **fields: Any) -> str:
        return add_person(app.extensions["mecc"].db, email, **fields)

    return factory


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def page_token(client: Any, path: str = "/admin/rules") -> str:
    """The CSRF token a signed-in page carries for its script."""
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">',
                      response.get_data(as_text=True))
    assert match
    return match.group(1)


def sign_in(client: Any, email: str, password: str = PASSWORD,
            next_path: str = "/admin/rules") -> Any:
    token = form_token(client.get("/sign-in").get_data(as_text=True))
    return client.post("/sign-in", data={"email": email, "password": password,
                                         "next": next_path, "csrf_token": token})


def audit_actors(app: Any, entity: str, key: str) -> list[tuple[str, str]]:
    from mecc.store.models import AuditEntry

    with app.extensions["mecc"].db.session() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.entity == entity,
                                                        AuditEntry.entity_key == key)
                               .order_by(AuditEntry.id))
        return [(row.action, row.actor) for row in rows]


# ------------------------------------------------------------------------------ mecc users
@pytest.mark.commits
def test_users_cli_creates_lists_and_disables_accounts(app: Any, client: Any,
                                                       database_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MECC_DATABASE_URL", database_url)
    runner = CliRunner()
    created = runner.invoke(main, ["users", "create", "--email", "Ann.Lead@Example.org",
                                   "--name", "Ann Lead", "--role", "clinical_safety_officer",
                                   "--organisation", "y02345", "--password-stdin"],
                            input=PASSWORD + "\n", catch_exceptions=False)
    assert created.exit_code == 0, created.output
    assert "ann.lead@example.org" in created.output and PASSWORD not in created.output
    oidc_only = runner.invoke(main, ["users", "create", "--email", "bo@example.org", "--name",
                                     "Bo", "--role", "viewer", "--organisation", "*"])
    assert oidc_only.exit_code == 0 and "OpenID Connect only" in oidc_only.output

    with app.extensions["mecc"].db.session() as session:
        user = session.scalar(select(User).where(User.email == "ann.lead@example.org"))
        assert user is not None and user.organisation == "Y02345"
        assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash

    listing = runner.invoke(main, ["users", "list"])
    assert listing.exit_code == 0
    assert re.search(r"ann\.lead@example\.org\s+active\s+clinical_safety_officer\s+Y02345\s+"
                     r"Ann Lead\s+\[sign-in: password\]", listing.output), listing.output
    assert "bo@example.org" in listing.output and "argon2" not in listing.output

    assert sign_in(client, "ann.lead@example.org").status_code == 303
    assert client.get("/api/v1/rules").status_code == 200

    disabled = runner.invoke(main, ["users", "disable", "ann.lead@example.org"])
    assert disabled.exit_code == 0, disabled.output
    # The session ends at its next request, and signing in again is refused.
    assert_problem(client.get("/api/v1/rules"), 401)
    again = sign_in(client, "ann.lead@example.org")
    assert again.status_code == 401
    assert "disabled" in again.get_data(as_text=True)
    assert [a for a, _ in audit_actors(app, "user", user.id)] == ["created", "signed_in",
                                                                  "disabled"]


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--role", "superuser"], None, "Invalid value for '--role'"),
    (["--role", "viewer", "--password-stdin"], "short\n", "at least 12 characters"),
    (["--role", "viewer", "--organisation", "not an ods"], None, "ODS code"),
], ids=["unknown-role", "short-password", "bad-organisation"])
def test_users_create_refuses_what_it_cannot_do(database_url: str, args: list[str],
                                                stdin: str | None, message: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MECC_DATABASE_URL", database_url)
    base = ["users", "create", "--email", "x@example.org", "--name", "X"]
    if "--organisation" not in args:
        args = [*args, "--organisation", "*"]
    result = CliRunner().invoke(main, base + args, input=stdin)
    assert result.exit_code == 2 and message in result.output, result.output


def test_an_email_has_one_account(app: Any, add_user: Any) -> None:
    add_user()
    with app.extensions["mecc"].db.session() as session, \
            pytest.raises(accounts.AccountError, match="already an account"):
        accounts.create_user(session, email="ANN.LEAD@example.org", name="Other",
                             role="viewer", organisation="*")


# ------------------------------------------------------------------------------ signing in
def test_the_pages_ask_people_to_sign_in(client: Any) -> None:
    for path in ("/admin/rules", "/reports", "/screen"):
        response = client.get(path)
        assert response.status_code == 401, path
        html = response.get_data(as_text=True)
        assert 'action="/sign-in"' in html and "API key" not in html
        assert f'name="next" value="{path}"' in html
        assert "form-action 'self'" in response.headers["Content-Security-Policy"]


def test_signing_in_with_a_password_opens_the_pages_and_the_api(client: Any,
                                                                add_user: Any) -> None:
    add_user(role="viewer", organisation="Y02345")
    response = sign_in(client, "Ann.Lead@example.org ", next_path="/reports")
    assert response.status_code == 303 and response.headers["Location"] == "/reports"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP here: a Secure cookie would never come back

    page = client.get("/reports")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Ann Lead" in html and "viewer" in html and "Y02345" in html
    assert 'id="api-key"' not in html
    assert client.get("/api/v1/rules").status_code == 200
    assert client.get("/admin/rules").status_code == 200


def test_the_session_cookie_is_secure_over_https(client: Any, add_user: Any) -> None:
    add_user()
    token = form_token(client.get("/sign-in", base_url="https://mecc.example").get_data(
        as_text=True))
    response = client.post("/sign-in", base_url="https://mecc.example", data={
        "email": "ann.lead@example.org", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(client: Any,
                                                                     add_user: Any) -> None:
    add_user()
    wrong = sign_in(client, "ann.lead@example.org", "not the password at all")
    unknown = sign_in(client, "nobody@example.org", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    message = "The email address or password is not right."
    assert message in wrong.get_data(as_text=True) and message in unknown.get_data(as_text=True)
    assert_problem(client.get("/api/v1/rules"), 401)


def test_an_account_without_a_password_cannot_sign_in_with_one(client: Any,
                                                                add_user: Any) -> None:
    add_user(password=None)
    assert sign_in(client, "ann.lead@example.org", "").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/x", "//evil.example/x",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_after_signing_in_the_browser_stays_on_this_site(client: Any, add_user: Any,
                                                         target: str) -> None:
    add_user()
    response = sign_in(client, "ann.lead@example.org", next_path=target)
    assert response.status_code == 303 and response.headers["Location"] == "/admin/rules"


def test_signing_out_ends_the_session(client: Any, add_user: Any) -> None:
    add_user()
    sign_in(client, "ann.lead@example.org")
    token = page_token(client)
    response = client.post("/sign-out", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/sign-in"
    assert_problem(client.get("/api/v1/rules"), 401)
    assert client.get("/admin/rules").status_code == 401


# ------------------------------------------------------------------------------ sessions end
def _age_session(client: Any, *, idle: float, since_sign_in: float) -> None:
    now = int(time.time())
    with client.session_transaction() as session:
        session[sessions.SEEN_AT] = now - int(idle)
        session[sessions.SIGNED_IN_AT] = now - int(since_sign_in)


def test_a_session_ends_after_thirty_idle_minutes(client: Any, add_user: Any) -> None:
    add_user()
    sign_in(client, "ann.lead@example.org")
    _age_session(client, idle=29 * 60, since_sign_in=3 * 3600)
    assert client.get("/api/v1/rules").status_code == 200  # and that counts as activity
    with client.session_transaction() as session:
        assert time.time() - session[sessions.SEEN_AT] < 60

    _age_session(client, idle=31 * 60, since_sign_in=3 * 3600)
    assert_problem(client.get("/api/v1/rules"), 401)
    # Gone for good: the next request, however soon, is not signed in either.
    page = client.get("/admin/rules")
    assert page.status_code == 401
    assert client.get("/admin/rules").status_code == 401


def test_a_session_ends_twelve_hours_after_signing_in_however_busy(client: Any,
                                                                   add_user: Any) -> None:
    add_user()
    sign_in(client, "ann.lead@example.org")
    _age_session(client, idle=10, since_sign_in=12 * 3600 - 60)
    assert client.get("/api/v1/rules").status_code == 200
    _age_session(client, idle=10, since_sign_in=12 * 3600 + 1)
    page = client.get("/admin/rules")
    assert page.status_code == 401
    assert "Your session has ended" in page.get_data(as_text=True)


# ------------------------------------------------------------------------------ CSRF
def test_a_page_request_that_changes_something_needs_the_csrf_token(app: Any, client: Any,
                                                                    add_user: Any) -> None:
    add_user()
    sign_in(client, "ann.lead@example.org")
    token = page_token(client)

    refused = assert_problem(client.post("/api/v1/rules", json=RULE), 403)
    assert "CSRF" in refused["detail"]
    assert_problem(client.post("/api/v1/rules", json=RULE,
                               headers={"X-CSRFToken": "forged-" + token[7:]}), 403)
    with app.extensions["mecc"].db.session() as session:
        assert session.get(Rule, RULE["key"]) is None

    created = client.post("/api/v1/rules", json=RULE, headers={"X-CSRFToken": token})
    assert created.status_code == 201, created.json


def test_signing_out_without_the_token_is_refused(client: Any, add_user: Any) -> None:
    add_user()
    sign_in(client, "ann.lead@example.org")
    assert client.post("/sign-out").status_code == 400
    assert client.get("/api/v1/rules").status_code == 200  # still signed in


def test_a_sign_in_form_without_the_token_is_refused(client: Any, add_user: Any) -> None:
    add_user()
    client.get("/sign-in")
    response = client.post("/sign-in", data={"email": "ann.lead@example.org",
                                             "password": PASSWORD})
    assert response.status_code == 400
    assert_problem(client.get("/api/v1/rules"), 401)


def test_api_keys_need_no_csrf_token(client: Any, make_key: Any) -> None:
    key = make_key(organisation="*", scopes=("rules:read", "rules:write"))
    response = client.post("/api/v1/rules", json=RULE, headers=auth_header(key))
    assert response.status_code == 201, response.json


def test_a_key_is_not_helped_by_a_session_it_arrives_with(client: Any, add_user: Any) -> None:
    """Authorization decides: a bad key with a signed-in browser's cookie is still refused."""
    add_user()
    sign_in(client, "ann.lead@example.org")
    assert_problem(client.get("/api/v1/rules",
                              headers={"Authorization": "Bearer mecc_unknown"}), 401)


# ------------------------------------------------------------------------------ roles
def test_a_role_gives_its_scopes_and_no_more(client: Any, add_user: Any) -> None:
    add_user("vi@example.org", role="viewer")
    sign_in(client, "vi@example.org")
    token = page_token(client)
    assert client.get("/api/v1/rules").status_code == 200
    assert client.get("/reports").status_code == 200
    refused = assert_problem(client.post("/api/v1/rules", json=RULE,
                                         headers={"X-CSRFToken": token}), 403)
    assert refused["detail"] == "Your role lacks the 'rules:write' scope."
    # The staff screen shows prompts, which a viewer's role does not include.
    screen = client.get("/screen")
    assert screen.status_code == 403
    assert "prompts:read" in screen.get_data(as_text=True)


def test_a_signed_in_person_opens_the_screen_for_their_organisation(client: Any,
                                                                    add_user: Any) -> None:
    add_user(role="admin", organisation="Y02345")
    sign_in(client, "ann.lead@example.org", next_path="/screen")
    screen = client.get("/screen")
    assert screen.status_code == 200
    html = screen.get_data(as_text=True)
    token = re.search(r'data-token="([^"]+)"', html)
    assert token and "Y02345" in html
    recent = client.get("/api/v1/stream/recent", headers={"X-Stream-Token": token.group(1)})
    assert recent.status_code == 200, recent.json


# ------------------------------------------------------------------------------ audit
def test_the_audit_log_names_the_person(app: Any, client: Any, add_user: Any,
                                        make_key: Any) -> None:
    add_user()
    sign_in(client, "ann.lead@example.org")
    token = page_token(client)
    assert client.post("/api/v1/rules", json=RULE,
                       headers={"X-CSRFToken": token}).status_code == 201

    reader = make_key(organisation="*", scopes=("rules:read",), name="audit reader")
    entries = client.get(f"/api/v1/audit?entity=rule&key={RULE['key']}",
                         headers=auth_header(reader)).json["items"]
    assert [e["actor"] for e in entries] == ["Ann Lead (ann.lead@example.org)"]
    with app.extensions["mecc"].db.session() as session:
        user = session.scalar(select(User))
        assert user is not None
        assert audit_actors(app, "user", user.id)[-1] == (
            "signed_in", "Ann Lead (ann.lead@example.org)")


# ------------------------------------------------------------------------------ rate limit
def test_failed_sign_in_attempts_are_limited(app: Any, client: Any, add_user: Any,
                                             redis_url: str) -> None:
    add_user()
    add_user("bo@example.org", name="Bo")
    # Successful sign-ins do not count towards the limit.
    for _ in range(3):
        assert sign_in(app.test_client(), "bo@example.org").status_code == 303
    for _ in range(10):
        assert sign_in(client, "ann.lead@example.org", "wrong password!!").status_code == 401
    limited = sign_in(client, "ann.lead@example.org")  # even the right password, for now
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert "Too many sign-in attempts" in limited.get_data(as_text=True)
    # The limit is per address too: another account from here waits as well.
    assert sign_in(app.test_client(), "bo@example.org").status_code == 429
