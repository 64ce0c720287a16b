"""The API reference (/api/docs) in headless Chromium: Swagger UI from this server renders
every operation under the page's content security policy (no inline script, nothing from
another origin), and "try it out" with an API key calls the API. A screenshot goes to docs/."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import ROOT

TIMEOUT_MS = 20_000
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.browser
def test_the_reference_renders_and_tries_a_call_with_a_key(browser: Any, live_server: str,
                                                           make_key: Any) -> None:
    key = make_key(scopes=("rules:read",))
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(f"{live_server}/api/docs")
        page.wait_for_selector(".opblock")
        assert page.locator(".opblock").count() >= 40
        page.screenshot(path=str(ROOT / "docs" / "api-docs.png"))

        # Authorize with the key, then try GET /api/v1/rules.
        page.locator(".auth-wrapper button.authorize").click()
        page.locator("input[aria-label='auth-bearer-value']").first.fill(key)
        page.locator(".auth-btn-wrapper button.authorize").first.click()
        page.locator("button.btn-done").first.click()
        operation = page.locator("#operations-rules-rules_list_rules")
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        operation.locator("button.execute").click()
        status = operation.locator(".live-responses-table tbody .response-col_status").first
        assert status.inner_text().strip() == "200"
        body = operation.locator(".live-responses-table .microlight").first.inner_text()
        assert '"items"' in body
    finally:
        context.close()
    assert not problems, problems  # a blocked script or style would be an error here
    assert all(url.startswith(live_server) or url.startswith("data:") for url in requests), (
        sorted({u for u in requests if not u.startswith(live_server)}))
