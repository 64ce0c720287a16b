"""OpenID Connect sign-in, end to end, against a real provider process (oidc-provider-mock from
PyPI, which signs real ID tokens with Authlib) and the app served over HTTP. The browser is
played by a requests session following the redirects one by one."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from mecc.people import accounts
from mecc.store.models import AuditEntry, User
from tests.support.processes import Proc, free_port, http_ok

CLIENT_ID = "mecc-prompts-test"
# The app's commits must be seen by the server thread's own connections.
pytestmark = pytest.mark.commits


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The provider's issuer URL. `localhost`: Authlib allows plain HTTP to a loopback host
    only (the issuer in its tokens is the host it was asked by)."""
    port = free_port()
    proc = Proc("oidc-provider", [sys.executable, "-m", "oidc_provider_mock", "--host",
                                  "127.0.0.1", "--port", str(port)],
                {"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
                tmp_path_factory.mktemp("oidc"), port=port)
    issuer = f"http://localhost:{port}"
    try:
        proc.wait_ready(lambda: http_ok(f"{proc.base}/.well-known/openid-configuration"), 30)
        yield issuer
    finally:
        proc.stop()


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], provider: str) -> dict[str, Any]:
    return {**settings_overrides, "oidc_issuer": provider, "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": "provider-secret"}


@pytest.fixture
def live_app(app: Any) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-app", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def person_at_provider(provider: str, sub: str, **claims: Any) -> None:
    answer = requests.put(f"{provider}/users/{sub}", json=claims, timeout=10)
    assert answer.status_code == 204, answer.text


def add_account(app: Any, email: str, *, role: str = "viewer",
                organisation: str = "Y02345") -> None:
    with app.extensions["mecc"].db.session() as session:
        accounts.create_user(session, email=email, name="Ann Lead", role=role,
                             organisation=organisation)
        session.commit()


def sign_in_at_provider(base: str, sub: str, browser: requests.Session | None = None,
                        next_path: str = "/reports") -> tuple[requests.Session, Any]:
    """Start at our sign-in, choose `sub` at the provider, come back; the last response."""
    browser = browser or requests.Session()
    start = browser.get(f"{base}/sign-in/oidc?next={next_path}", allow_redirects=False,
                        timeout=10)
    assert start.status_code == 302, start.text
    authorize = start.headers["Location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["client_id"] == [CLIENT_ID] and "openid" in query["scope"][0]
    assert query["state"] and query["nonce"]
    assert browser.get(authorize, timeout=10).status_code == 200  # the provider's page
    chosen = browser.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=10)
    assert chosen.status_code == 302, chosen.text
    callback = chosen.headers["Location"]
    assert callback.startswith(f"{base}/sign-in/oidc/callback?")
    return browser, browser.get(callback, allow_redirects=False, timeout=10)


def test_a_person_signs_in_through_their_organisations_provider(
        app: Any, live_app: str, provider: str) -> None:
    add_account(app, "ann.lead@example.org", role="viewer")
    person_at_provider(provider, "ann-sub", email="Ann.Lead@example.org", name="Ann L",
                       roles=["clinical_safety_officer", "staff"])

    browser, back = sign_in_at_provider(live_app, "ann-sub")
    assert back.status_code == 303 and back.headers["Location"] == "/reports"
    cookie = back.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = browser.get(f"{live_app}/reports", timeout=10)
    assert page.status_code == 200 and "Ann Lead" in page.text
    assert "clinical safety officer" in page.text
    assert browser.get(f"{live_app}/api/v1/rules", timeout=10).status_code == 200

    with app.extensions["mecc"].db.session() as session:
        user = session.scalar(select(User).where(User.email == "ann.lead@example.org"))
        assert user is not None
        # The provider's role claim decides the role; its subject is now bound to the account.
        assert user.role == "clinical_safety_officer" and user.oidc_subject == "ann-sub"
        trail = [(a.action, a.actor, a.detail) for a in session.scalars(
            select(AuditEntry).where(AuditEntry.entity_key == user.id).order_by(AuditEntry.id))]
    assert trail[1:] == [
        ("role_changed", "openid-provider", {"from": "viewer", "to": "clinical_safety_officer"}),
        ("signed_in", "Ann Lead (ann.lead@example.org)", {"method": "oidc"})]

    # The same person signs in again later: found by their subject.
    _, again = sign_in_at_provider(live_app, "ann-sub")
    assert again.status_code == 303


def test_someone_without_an_account_is_turned_away(live_app: str, provider: str) -> None:
    person_at_provider(provider, "stranger-sub", email="stranger@example.org",
                       roles=["admin"])
    browser, back = sign_in_at_provider(live_app, "stranger-sub")
    assert back.status_code == 401
    assert "There is no MECC Prompts account for stranger@example.org" in back.text
    assert browser.get(f"{live_app}/api/v1/rules", timeout=10).status_code == 401


def test_a_role_claim_without_any_of_our_roles_is_turned_away(app: Any, live_app: str,
                                                              provider: str) -> None:
    add_account(app, "bo@example.org")
    person_at_provider(provider, "bo-sub", email="bo@example.org", roles=["Nurse"])
    _, back = sign_in_at_provider(live_app, "bo-sub")
    assert back.status_code == 401 and "no MECC Prompts role" in back.text


def test_another_identity_with_the_same_email_is_turned_away(app: Any, live_app: str,
                                                             provider: str) -> None:
    add_account(app, "cy@example.org")
    person_at_provider(provider, "cy-sub", email="cy@example.org")
    assert sign_in_at_provider(live_app, "cy-sub")[1].status_code == 303
    # The address is given to someone else at the provider: not enough to become Cy here.
    person_at_provider(provider, "impostor-sub", email="cy@example.org")
    _, back = sign_in_at_provider(live_app, "impostor-sub")
    assert back.status_code == 401 and "linked to another identity" in back.text


def test_an_answer_for_a_sign_in_started_elsewhere_is_refused(app: Any, live_app: str,
                                                              provider: str) -> None:
    add_account(app, "di@example.org")
    person_at_provider(provider, "di-sub", email="di@example.org")
    victim = requests.Session()
    start = victim.get(f"{live_app}/sign-in/oidc", allow_redirects=False, timeout=10)
    chosen = victim.post(start.headers["Location"], data={"sub": "di-sub"},
                         allow_redirects=False, timeout=10)
    # Another browser (no state of that sign-in in its session) presents the code.
    attacker = requests.Session()
    back = attacker.get(chosen.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 401 and "could not be accepted" in back.text
    assert attacker.get(f"{live_app}/api/v1/rules", timeout=10).status_code == 401


def test_cancelling_at_the_provider_comes_back_to_the_sign_in_page(live_app: str) -> None:
    browser = requests.Session()
    start = browser.get(f"{live_app}/sign-in/oidc", allow_redirects=False, timeout=10)
    denied = browser.post(start.headers["Location"], data={"action": "deny"},
                          allow_redirects=False, timeout=10)
    back = browser.get(denied.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 401 and "cancelled" in back.text


def test_the_sign_in_page_offers_the_provider(live_app: str) -> None:
    page = requests.get(f"{live_app}/sign-in?next=/reports", timeout=10)
    assert re.search(r'href="/sign-in/oidc\?next=/reports"', page.text), page.text


def test_without_a_provider_set_there_is_no_such_sign_in(
        settings_overrides: dict[str, Any]) -> None:
    from mecc.api import create_app

    plain = create_app({**settings_overrides, "oidc_issuer": ""})
    client = plain.test_client()
    assert "/sign-in/oidc" not in client.get("/sign-in").get_data(as_text=True)
    assert client.get("/sign-in/oidc").status_code == 404
    plain.extensions["mecc"].db.dispose()
