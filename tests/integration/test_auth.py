"""Deny by default: every route declares its scope; keys, scopes, organisations and callbacks."""

from __future__ import annotations

import re
import time
import types
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from mecc.admin import keys
from mecc.store.models import ApiKey, Event
from mecc.views import auth
from tests.support.factories import PROBLEM_JSON, assert_problem, auth_header, make_event

EVENTS = "/api/v1/events"
# The only routes anyone may call without a key (QUALITY.md, Security).
OPEN_ROUTES = {
    "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/docs",
    "/api/docs/assets/<string:name>",  # Swagger UI's script and style sheet for the docs
    # Signing in and out: the way to a session cannot itself need one (tests/integration/
    # test_people.py; the pages themselves need a signed-in person).
    "/sign-in", "/sign-in/oidc", "/sign-in/oidc/callback", "/sign-out",
    # CDS Hooks discovery is public by the CDS Hooks specification (the service calls are not).
    "/cds-services",
}


def stored(app: Any) -> list[Event]:
    with app.extensions["mecc"].db.session() as session:
        return list(session.scalars(select(Event)))


def _is_framework_route(app: Any, rule: Any) -> bool:
    """Flask's static files and flask-smorest's own spec routes (under the spec prefix)."""
    if rule.endpoint == "static":
        return True
    prefix = app.config["OPENAPI_URL_PREFIX"].rstrip("/")
    return rule.endpoint.startswith("api-docs.") and rule.rule.startswith(prefix + "/")


def _example_url(rule: Any) -> str:
    """A concrete URL for a rule: a fresh UUID for uuid converters, a word otherwise (one
    that rule keys and service ids accept)."""
    def fill(match: re.Match[str]) -> str:
        converter = match.group(1) or ""
        if converter.startswith("uuid"):
            return str(uuid.uuid4())
        if converter.startswith("int"):
            return "1"
        return "example"
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", fill, rule.rule)


def _scoped_rules(app: Any, *, machine_only: bool = False) -> list[tuple[Any, tuple[str, ...]]]:
    return [(rule, app.view_functions[rule.endpoint].mecc_scope)
            for rule in app.url_map.iter_rules()
            if getattr(app.view_functions[rule.endpoint], "mecc_scope", None)
            and (not machine_only or _is_machine_route(rule))]


def _is_machine_route(rule: Any) -> bool:
    """Routes for other systems, which take a Bearer key and answer problem+json; web pages
    for people (such as /screen?token=) answer with a page instead."""
    return rule.rule.startswith(("/api/", "/cds-services"))


# ------------------------------------------------------------------------------ the route walk
def test_every_route_declares_its_scope_or_is_deliberately_open(app: Any) -> None:
    offenders, opened = [], set()
    for rule in app.url_map.iter_rules():
        if _is_framework_route(app, rule):
            continue
        view = app.view_functions[rule.endpoint]
        scopes = getattr(view, "mecc_scope", None)
        if scopes is not None:
            if not (isinstance(scopes, tuple) and scopes
                    and all(s in keys.SCOPES for s in scopes)):
                offenders.append(f"{rule.rule} ({rule.endpoint}): bad mecc_scope {scopes!r}")
        elif getattr(view, "mecc_open", False) is True:
            opened.add(rule.rule)
        else:
            offenders.append(f"{rule.rule} ({rule.endpoint}): declares no scope")
    assert not offenders, "routes without a declared scope:\n" + "\n".join(offenders)
    unexpected = opened - OPEN_ROUTES
    assert not unexpected, f"open routes beyond health, metrics and docs: {sorted(unexpected)}"
    assert "/api/v1/openapi.json" in {r.rule for r in app.url_map.iter_rules()}


def test_every_scoped_route_refuses_a_request_without_a_key(app: Any, client: Any) -> None:
    scoped = _scoped_rules(app)
    assert {rule.rule for rule, _ in scoped} >= {EVENTS, f"{EVENTS}/batch"}
    failures = []
    for rule, _ in scoped:
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(_example_url(rule), method=method, json={})
            if response.status_code != 401:
                failures.append(f"{method} {rule.rule}: {response.status_code}")
            elif not _is_machine_route(rule):
                continue
            elif response.mimetype != PROBLEM_JSON:
                failures.append(f"{method} {rule.rule}: 401 as {response.mimetype}")
            elif not response.headers.get("WWW-Authenticate", "").startswith("Bearer"):
                failures.append(f"{method} {rule.rule}: no WWW-Authenticate: Bearer")
    assert not failures, failures


def test_every_scoped_route_refuses_a_key_without_its_scope(app: Any, client: Any,
                                                            make_key: Any) -> None:
    failures = []
    for rule, scopes in _scoped_rules(app, machine_only=True):
        others = tuple(s for s in keys.SCOPES if s not in scopes and s != "admin")
        token = make_key(organisation="*", scopes=others)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(_example_url(rule), method=method, json={},
                                   headers=auth_header(token))
            if response.status_code != 403 or response.mimetype != PROBLEM_JSON:
                failures.append(f"{method} {rule.rule}: {response.status_code}")
    assert not failures, failures


def test_open_routes_answer_without_a_key(client: Any) -> None:
    for path in ("/healthz", "/metrics", "/api/v1/openapi.json", "/api/docs"):
        assert client.get(path).status_code == 200, path


# ------------------------------------------------------------------------------ 401
@pytest.mark.parametrize("header", [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "Token mecc_abcdefabcdef_" + "a" * 40,
    "Bearer not-a-key",
    "Bearer mecc_short_x",
    "Bearer mecc_abcdefabcdef_" + "a" * 40,  # well formed, unknown
], ids=["none", "empty", "bearer-only", "bearer-blank", "basic", "other-scheme", "garbage",
        "malformed", "unknown"])
def test_without_a_valid_key_is_401(app: Any, client: Any, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    problem = assert_problem(client.post(EVENTS, json=make_event(), headers=headers), 401)
    assert problem["type"] == "urn:mecc:problem:unauthorized"
    assert stored(app) == []


def test_a_key_with_a_wrong_secret_is_401(client: Any, make_key: Any) -> None:
    token = make_key()
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_problem(client.post(EVENTS, json=make_event(), headers=auth_header(forged)), 401)
    assert client.post(EVENTS, json=make_event(), headers=auth_header(token)).status_code == 202


def test_the_scheme_is_case_insensitive(client: Any, make_key: Any) -> None:
    token = make_key()
    response = client.post(EVENTS, json=make_event(), headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 202


def _revoke(app: Any, token: str) -> None:
    lookup = token.split("_")[1]
    with app.extensions["mecc"].db.session() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.lookup == lookup))
        assert keys.revoke_key(session, row.id) is not None
        session.commit()


def test_a_revoked_key_is_401(app: Any, client: Any, make_key: Any) -> None:
    token = make_key()
    assert client.post(EVENTS, json=make_event(), headers=auth_header(token)).status_code == 202
    _revoke(app, token)
    auth.clear_cache()

    problem = assert_problem(client.post(EVENTS, json=make_event(), headers=auth_header(token)),
                             401)
    assert "revoked" in problem["detail"]
    assert len(stored(app)) == 1


def test_revocation_takes_effect_within_the_cache_lifetime(app: Any, client: Any, make_key: Any,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    assert auth.CACHE_SECONDS <= 10
    token = make_key()
    assert client.post(EVENTS, json=make_event(), headers=auth_header(token)).status_code == 202
    _revoke(app, token)
    # Within the cache lifetime a cached principal may still answer ...
    assert client.post(EVENTS, json=make_event(),
                       headers=auth_header(token)).status_code in (202, 401)
    # ... but once it has passed, the revocation holds everywhere, with no cache clearing.
    later = time.monotonic() + auth.CACHE_SECONDS + 0.5
    monkeypatch.setattr(auth, "time", types.SimpleNamespace(monotonic=lambda: later))
    assert_problem(client.post(EVENTS, json=make_event(), headers=auth_header(token)), 401)


# ------------------------------------------------------------------------------ 403
def test_a_key_without_the_scope_is_403(app: Any, client: Any, make_key: Any) -> None:
    reader = make_key(scopes=("prompts:read",))
    problem = assert_problem(client.post(EVENTS, json=make_event(), headers=auth_header(reader)),
                             403)
    assert "events:write" in problem["detail"]
    assert stored(app) == []


def test_the_admin_scope_covers_the_others(client: Any, make_key: Any) -> None:
    admin = make_key(scopes=("admin",))
    assert client.post(EVENTS, json=make_event(), headers=auth_header(admin)).status_code == 202


def test_posting_for_another_organisation_is_403(app: Any, client: Any, make_key: Any) -> None:
    token = make_key(organisation="Y02345")
    response = client.post(EVENTS, json=make_event(organisation="A81001"),
                           headers=auth_header(token))
    problem = assert_problem(response, 403)
    assert "A81001" in problem["detail"]
    assert stored(app) == []


def test_the_organisation_is_matched_case_insensitively(app: Any, client: Any,
                                                        make_key: Any) -> None:
    token = make_key(organisation="Y02345")
    response = client.post(EVENTS, json=make_event(organisation="y02345"),
                           headers=auth_header(token))
    assert response.status_code == 202
    assert [r.organisation for r in stored(app)] == ["Y02345"]


def test_a_key_for_all_organisations_may_post_for_any(app: Any, client: Any,
                                                      make_key: Any) -> None:
    everyone = make_key(organisation="*")
    for ods in ("A81001", "Y02345", "RW3"):
        response = client.post(EVENTS, json=make_event(organisation=ods),
                               headers=auth_header(everyone))
        assert response.status_code == 202
    assert sorted(r.organisation for r in stored(app)) == ["A81001", "RW3", "Y02345"]


# ------------------------------------------------------------------------------ 404 across tenants
def test_another_organisations_event_is_404_like_a_missing_one(client: Any,
                                                               make_key: Any) -> None:
    everyone = make_key(organisation="*")
    theirs = client.post(EVENTS, json=make_event(organisation="A81001"),
                         headers=auth_header(everyone)).get_json()["id"]
    ours = make_key(organisation="Y02345", scopes=("prompts:read",))
    owner = make_key(organisation="A81001", scopes=("prompts:read",))

    hidden = assert_problem(client.get(f"{EVENTS}/{theirs}", headers=auth_header(ours)), 404)
    missing = assert_problem(client.get(f"{EVENTS}/{uuid.uuid4()}", headers=auth_header(ours)),
                             404)
    assert hidden["detail"] == missing["detail"] and hidden["title"] == missing["title"]
    assert hidden.keys() == missing.keys()
    for token in (everyone, owner):
        response = client.get(f"{EVENTS}/{theirs}", headers=auth_header(token))
        assert response.status_code == 200
        assert response.get_json()["organisation"] == "A81001"


def test_reading_an_event_needs_a_reading_scope(client: Any, make_key: Any) -> None:
    writer = make_key()
    event_id = client.post(EVENTS, json=make_event(),
                           headers=auth_header(writer)).get_json()["id"]
    rules_only = make_key(scopes=("rules:read",))
    assert_problem(client.get(f"{EVENTS}/{event_id}", headers=auth_header(rules_only)), 403)
    assert_problem(client.get(f"{EVENTS}/{event_id}"), 401)


# ------------------------------------------------------------------------------ callbacks (SSRF)
@pytest.mark.parametrize("url", [
    "https://evil.example/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://127.0.0.1:6379/",
    "https://hooks.gp.example.evil.example/hook",
    "https://hooks.gp.example@evil.example/hook",
    "https://localhost/hook",          # allowed only on port 8443
    "https://localhost:9443/hook",
])
def test_callback_host_not_on_the_keys_allow_list_is_422(app: Any, client: Any, make_key: Any,
                                                         url: str) -> None:
    token = make_key(callback_hosts=("hooks.gp.example", "localhost:8443"))
    response = client.post(EVENTS, json=make_event(callback_url=url), headers=auth_header(token))
    problem = assert_problem(response, 422, "callback_url")
    message = problem["errors"]["callback_url"][0]
    # user@host is refused before the allow-list is read: it carries a user name (issue 13).
    assert "--callback-host" in message or "user name" in message
    assert stored(app) == []


@pytest.mark.parametrize("url", [
    "https://hooks.gp.example/mecc/webhook",
    "https://HOOKS.GP.EXAMPLE/mecc/webhook",
    "https://localhost:8443/hook",
])
def test_callback_host_on_the_allow_list_is_accepted(app: Any, client: Any, make_key: Any,
                                                     url: str) -> None:
    token = make_key(callback_hosts=("hooks.gp.example", "localhost:8443"))
    response = client.post(EVENTS, json=make_event(callback_url=url), headers=auth_header(token))
    assert response.status_code == 202, response.get_json()
    assert [r.callback_url for r in stored(app)] == [url]


def test_a_key_without_callback_hosts_may_not_name_a_callback(client: Any,
                                                              make_key: Any) -> None:
    token = make_key()
    response = client.post(EVENTS, json=make_event(callback_url="https://gp.example/hook"),
                           headers=auth_header(token))
    assert_problem(response, 422, "callback_url")
