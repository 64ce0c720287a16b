"""axe-core on the pages people sign in to: the rule editor, the reports dashboard and the
staff screen opened by a signed-in person. No serious or critical violation.

The staff screen with live cards (opened with a token) is checked in test_screen.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.accessibility import axe_violations
from tests.support.factories import auth_header, make_event
from tests.support.people import add_person, sign_in_on_page

pytestmark = [pytest.mark.browser,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
TIMEOUT_MS = 15_000


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def test_rule_editor_and_reports_have_no_serious_violations(
        live_server: str, page: Any, app: Any, client: Any, make_key: Any,
        evaluate_pending: Any) -> None:
    key = make_key()
    for n in range(6):
        body = make_event(person={"id": f"a11y-{n}", "age": 40 + n, "sex": "male"},
                          facts={"smoking_status": "current", "bmi": 31.0 + n})
        assert client.post("/api/v1/events", json=body,
                           headers=auth_header(key)).status_code == 202
    evaluate_pending()
    email = add_person(app.extensions["mecc"].db, role="admin", organisation="*")

    sign_in_on_page(page, live_server, email, next_path="/admin/rules")
    page.locator("#rule-list tbody tr").first.wait_for()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Open rule smoking-very-brief-advice").click()
    page.locator("#editor").wait_for()
    assert axe_violations(page) == []

    page.goto(f"{live_server}/reports")
    page.locator("#chart svg[role='img']").wait_for()
    assert axe_violations(page) == []

    page.goto(f"{live_server}/screen?organisation=Y02345")
    page.wait_for_selector("#connection[data-state=live]")
    page.locator("section.contact").nth(5).wait_for()
    assert axe_violations(page) == []

    # Signed in, the screen opens for one person's record as a token-opened one does.
    page.goto(f"{live_server}/screen?organisation=Y02345&person_id=a11y-2&source=emis-web")
    page.wait_for_selector("#connection[data-state=live]")
    page.locator("section.contact").first.wait_for()
    assert {s.get_attribute("data-person-id")
            for s in page.locator("section.contact").all()} == {"a11y-2"}
    assert "a11y-2" in page.locator("#scope").inner_text()
