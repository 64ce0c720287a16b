"""The same security headers on every answer: pages, the API reference, JSON, errors, files
(mecc.views.headers). Issue 13, finding 14: /screen had no frame-ancestors, /api/docs no
content security policy and no nosniff."""

from __future__ import annotations

from typing import Any

import pytest

from mecc.views.headers import API_POLICY, PAGE_POLICY

PAGES = ("/screen", "/api/docs", "/sign-in", "/admin/rules", "/reports", "/referrals")
OTHER = ("/healthz", "/metrics", "/api/v1/openapi.json", "/api/v1/events", "/api/v1/prompts",
         "/no/such/path", "/static/screen.js", "/api/docs/assets/swagger-ui-bundle.js",
         "/cds-services")


def _assert_common(response: Any, path: str) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff", path
    assert headers["Referrer-Policy"] == "no-referrer", path
    assert headers["X-Frame-Options"] == "DENY", path
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
    assert "Strict-Transport-Security" not in headers, path  # plain HTTP here


@pytest.mark.parametrize("path", PAGES)
def test_pages_run_only_their_own_scripts_and_are_never_framed(client: Any, path: str) -> None:
    response = client.get(path)
    assert response.mimetype == "text/html", path
    _assert_common(response, path)
    policy = response.headers["Content-Security-Policy"]
    assert policy == PAGE_POLICY
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy


@pytest.mark.parametrize("path", OTHER)
def test_every_other_answer_allows_nothing_to_run(client: Any, path: str) -> None:
    response = client.get(path)
    response.close()  # a file answer holds its file open until closed
    assert response.mimetype != "text/html", path
    _assert_common(response, path)
    assert response.headers["Content-Security-Policy"] == API_POLICY


def test_every_get_route_answers_with_the_headers(app: Any, client: Any) -> None:
    """Walk the URL map: whatever a route answers (200, 401, 404, 405, a redirect), the
    headers are on it."""
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments or rule.rule.endswith("/stream"):
            continue
        response = client.get(rule.rule)
        response.close()
        _assert_common(response, rule.rule)


def test_hsts_over_https(client: Any) -> None:
    response = client.get("/healthz", base_url="https://mecc.example")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_hsts_behind_a_proxy_that_terminates_tls(settings_overrides: dict[str, Any]) -> None:
    from mecc.api import create_app

    app = create_app({**settings_overrides, "public_url": "https://mecc.example"})
    try:
        response = app.test_client().get("/healthz")
        assert "max-age=" in response.headers["Strict-Transport-Security"]
    finally:
        app.extensions["mecc"].db.dispose()
