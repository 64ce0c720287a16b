"""The rule editor's publish flow in headless Chromium: a rule author saves a version and asks
for it to be published after seeing the diff; a clinical safety officer, signed in separately,
reviews the same diff and approves it; the new text reaches the next contact's prompt.

The app is served by a real HTTP server (werkzeug, in a thread) on a test database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import ROOT
from tests.support.factories import auth_header, make_event
from tests.support.people import add_person, sign_in_on_page

DOCS = ROOT / "docs"
SMOKING = "smoking-very-brief-advice"
NEW_SUMMARY = "Smoker: offer the new local stop smoking clinic today"
TIMEOUT_MS = 15_000

pytestmark = [pytest.mark.browser,
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture
def live_server(seeded: Any) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, seeded, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def person_page(browser: Any) -> Iterator[Callable[[], Any]]:
    """New pages, each in a browser context of its own (its own cookies: its own person)."""
    contexts: list[Any] = []

    def open_page() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.problems = []
        page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        return page

    yield open_page
    for context in contexts:
        context.close()


def box(page: Any, selector: str) -> dict[str, float]:
    found: dict[str, float] = page.locator(selector).bounding_box()
    return found


def test_publish_asks_for_approval_with_the_diff_and_a_second_person_approves(
        live_server: str, person_page: Callable[[], Any], app: Any, client: Any,
        make_key: Any, evaluate_pending: Callable[[], int]) -> None:
    db = app.extensions["mecc"].db
    author_email = add_person(db, "ann.author@example.org", role="rule_author", name="Ann Author")
    officer_email = add_person(db, "cs.officer@example.org", role="clinical_safety_officer",
                               name="Cal Officer")

    author = person_page()
    sign_in_on_page(author, live_server, author_email)
    author.get_by_role("button", name=f"Open rule {SMOKING}").click()
    author.locator("#editor").wait_for()
    # Two columns from 1200 px: the rule list beside the editor.
    rules, editor = box(author, "#rules-panel"), box(author, "#editor")
    assert rules["x"] + rules["width"] <= editor["x"] and editor["y"] < rules["y"] + 200

    # Each validation error is its own bullet.
    when = author.get_by_label("When (rule expression)")
    original_when = when.input_value()
    when.fill("smokng_status == 'current' && bmj >= 30")
    author.get_by_role("button", name="Save as new draft version").click()
    author.locator("#error-summary li").nth(1).wait_for()
    bullets = author.locator("#error-summary li").all_inner_texts()
    assert len(bullets) >= 2 and all(b.startswith("when: ") for b in bullets[:2]), bullets
    when.fill(original_when)
    author.problems.clear()  # the browser logs the 422 it was meant to get

    author.get_by_label("Summary (at most 140 characters when shown)").fill(NEW_SUMMARY)
    author.get_by_role("button", name="Save as new draft version").click()
    author.locator("#save-status[data-kind='ok']").wait_for()
    author.locator("#version-list tbody tr[data-version='2']").wait_for()
    # The picker beside Publish moved to the version just saved.
    assert author.get_by_label("Version", exact=True).first.input_value() == "2"

    author.get_by_role("button", name="Publish", exact=True).click()
    dialog = author.locator("#publish-dialog")
    dialog.locator("li[data-field='prompt.summary']").wait_for()
    assert NEW_SUMMARY in dialog.inner_text()
    assert "v1" in dialog.locator(".diff-caption").inner_text()
    dialog.get_by_role("button", name="Ask for approval").click()
    author.locator("#save-status", has_text="waiting for approval").wait_for()
    author.locator("#approval-list li[data-key='smoking-very-brief-advice']").wait_for()
    assert author.problems == []

    officer = person_page()
    sign_in_on_page(officer, live_server, officer_email)
    officer.get_by_role("button", name=f"Review: Publish {SMOKING} v2").click()
    review = officer.locator("#publish-dialog")
    review.locator("li[data-field='prompt.summary']").wait_for()
    assert "Ann Author" in review.inner_text() and NEW_SUMMARY in review.inner_text()
    DOCS.mkdir(exist_ok=True)
    officer.screenshot(path=str(DOCS / "rule-approval.png"))
    review.get_by_role("button", name="Approve").click()
    officer.locator("#approvals-status", has_text="is live").wait_for()
    officer.locator("#approval-list li.empty").wait_for()
    live = officer.locator(f"#rule-list tr[data-key='{SMOKING}'] td").nth(2)
    assert live.inner_text() == "v2"

    # The version history shows what v2 changed against v1.
    officer.get_by_role("button", name=f"Open rule {SMOKING}").click()
    officer.get_by_role("button", name="Changes in version 2").click()
    officer.locator("#version-list .version-diff li[data-field='prompt.summary']").wait_for()
    # Rolling back is publishing an earlier version: the same confirmation, v2 -> v1.
    officer.get_by_role("button", name="Roll back to this version (v1)").click()
    officer.locator("#publish-dialog li[data-field='prompt.summary']").wait_for()
    assert "Roll back" in officer.locator("#publish-dialog-heading").inner_text()
    assert "from v2 to v1" in officer.locator("#publish-dialog .diff-caption").inner_text()
    officer.get_by_role("button", name="Cancel").click()
    assert officer.problems == []

    writer = make_key(organisation="*", scopes=("events:write", "prompts:read"))
    body = make_event(facts={"smoking_status": "current"}, conditions=[],
                      person={"id": "p-after-approval", "age": 50},
                      preferences={"opted_out": False, "declined_topics": []})
    event_id = client.post("/api/v1/events", json=body, headers=auth_header(writer)).json["id"]
    evaluate_pending()
    detail = client.get(f"/api/v1/events/{event_id}", headers=auth_header(writer)).json
    [prompt] = [p for p in detail["prompts"] if p["rule"]["key"] == SMOKING]
    assert (prompt["rule"]["version"], prompt["summary"]) == (2, NEW_SUMMARY)
