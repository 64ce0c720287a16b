"""The administrators' pages in headless Chromium: rule editor and outcome dashboard.

The app is served by a real HTTP server (werkzeug, in a thread) on a test database; a person
signs in on the sign-in page and the pages get their data from the API with that session.
Screenshots go to docs/.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from mecc.admin import backtest
from mecc.store.models import Backtest
from tests.support import ROOT
from tests.support.factories import auth_header, make_event
from tests.support.people import add_person, sign_in_on_page

DOCS = ROOT / "docs"
WRITER = ("events:write", "prompts:read", "prompts:write")
TIMEOUT_MS = 15_000

# One backend is enough here: the API under the pages is tested on both elsewhere.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    yield page
    context.close()


def _seed_outcomes(client: Any, make_key: Any, evaluate_pending: Callable[[], int]) -> None:
    """A few weeks of contacts across settings and topics, with outcomes recorded."""
    writer = make_key(organisation="*", scopes=WRITER)
    now = datetime.now(UTC)
    profiles = [
        ({"smoking_status": "current"}, "general_practice"),
        ({"bmi": 34.0}, "community_pharmacy"),
        ({"audit_c": 7}, "general_practice"),
        ({"phq2": 4}, "community_nursing"),
        ({"activity_minutes_per_week": 20}, "general_practice"),
        ({"smoking_status": "current", "bmi": 31.0}, "community_pharmacy"),
    ]
    for n in range(36):
        facts, setting = profiles[n % len(profiles)]
        body = make_event(person={"id": f"person-{n}", "age": 30 + n}, facts=facts,
                          conditions=[], setting=setting,
                          organisation="Y02345" if n % 4 else "A81001",
                          preferences={"opted_out": False, "declined_topics": []})
        body["occurred_at"] = (now - timedelta(days=n % 12, hours=n % 5)).isoformat()
        assert client.post("/api/v1/events", json=body,
                           headers=auth_header(writer)).status_code == 202
    evaluate_pending()
    prompts = client.get("/api/v1/prompts?limit=500&status=new",
                         headers=auth_header(writer)).json["items"]
    pattern = ["conversation_had", "referred", "declined", "conversation_had", "not_now",
               None, "referred", "not_appropriate", None]
    for n, prompt in enumerate(prompts):
        outcome = pattern[n % len(pattern)]
        if outcome:
            client.post(f"/api/v1/prompts/{prompt['id']}/outcome", json={"outcome": outcome},
                        headers=auth_header(writer))


def _run_queued_backtests(app: Any, deadline: float) -> None:
    """Stand in for the worker: run the back-test the page queued (the worker is tested in
    tests/integration/test_backtest.py)."""
    runtime = app.extensions["mecc"]
    while time.monotonic() < deadline:
        with runtime.db.session() as session:
            ids = list(session.scalars(select(Backtest.id).where(Backtest.status == "queued")))
        if ids:
            for backtest_id in ids:
                backtest.run_backtest(runtime, backtest_id)
            return
        time.sleep(0.1)
    pytest.fail("the page did not queue a back-test")


@pytest.mark.browser
def test_pages_ask_people_to_sign_in_and_render_no_data(client: Any, seeded: Any) -> None:
    for path in ("/admin/rules", "/reports"):
        response = client.get(path)
        assert response.status_code == 401
        html = response.get_data(as_text=True)
        assert 'action="/sign-in"' in html
        assert "smoking-very-brief-advice" not in html
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert "<script>" not in html, "no inline script (the CSP forbids it)"
    with client.get("/static/admin.js") as script:
        assert script.status_code == 200


@pytest.mark.browser
def test_rule_editor_validates_dry_runs_backtests_and_saves(
        live_server: str, page: Any, app: Any, client: Any, make_key: Any,
        evaluate_pending: Callable[[], int], redis_url: str) -> None:
    _seed_outcomes(client, make_key, evaluate_pending)
    email = add_person(app.extensions["mecc"].db, role="rule_author")
    sign_in_on_page(page, live_server, email, next_path="/admin/rules")
    rules = page.locator("#rule-list tbody tr")
    rules.first.wait_for()
    assert rules.count() >= 10
    assert page.locator("#rule-list").get_by_text("smoking-very-brief-advice").is_visible()

    page.get_by_role("button", name="Open rule smoking-very-brief-advice").click()
    page.locator("#editor").wait_for()
    when = page.get_by_label("When (rule expression)")
    assert "smoking_status" in when.input_value()

    when.fill("age >= 12 &&\n  smoking_stat == 'current'")
    error = page.locator("#when-errors .diagnostic")
    error.wait_for()
    assert "Line 2, column 3" in error.inner_text()
    assert "smoking_status" in error.inner_text()  # did you mean
    assert when.get_attribute("aria-invalid") == "true"

    when.fill("age >= 12 && smoking_status == 'current'")
    page.locator("#when-errors .when-ok").wait_for()
    assert when.get_attribute("aria-invalid") == "false"

    page.get_by_role("button", name="Dry run").click()
    verdict = page.locator("#dry-result .verdict.shown")
    verdict.wait_for()
    assert "Would show" in verdict.inner_text()
    assert page.locator("#dry-result .conditions li").count() >= 2

    page.get_by_label("Days", exact=True).fill("14")
    page.get_by_role("button", name="Start back-test").click()
    _run_queued_backtests(app, time.monotonic() + 10)
    page.locator("#backtest-status[data-kind='ok']").wait_for()
    assert "Done" in page.locator("#backtest-status").inner_text()
    assert page.locator("#backtest-result svg rect").count() > 0

    page.get_by_label("Title").fill("Smoker - very brief advice on stopping (edited)")
    page.get_by_role("button", name="Save as new draft version").click()
    page.locator("#save-status[data-kind='ok']").wait_for()
    assert "Saved as version 2" in page.locator("#save-status").inner_text()
    # The save message shows before the version list reloads: wait for the new row.
    page.locator("#version-list tbody tr").nth(1).wait_for(timeout=10_000)
    assert page.locator("#version-list tbody tr").count() == 2
    page.locator("#audit-list li").first.wait_for()

    # The screenshot shows an error as an administrator sees it while typing.
    when.fill("age >= 12 &&\n  smoking_stat == 'current'")
    page.locator("#when-errors .diagnostic").wait_for()
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "admin.png"), full_page=True)

    # Readable in a small window: the page reflows instead of scrolling sideways.
    page.set_viewport_size({"width": 400, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    assert page.problems == []


@pytest.mark.browser
def test_reports_dashboard_draws_charts(live_server: str, page: Any, app: Any, client: Any,
                                        make_key: Any,
                                        evaluate_pending: Callable[[], int]) -> None:
    _seed_outcomes(client, make_key, evaluate_pending)
    email = add_person(app.extensions["mecc"].db, "vi@example.org", role="viewer")
    sign_in_on_page(page, live_server, email, next_path="/reports")

    chart = page.locator("#chart svg[role='img']")
    chart.wait_for()
    assert chart.locator("rect").count() > 5
    assert page.locator("#report-table tbody tr").count() >= 4
    assert "Conversations" in page.locator("#totals").inner_text()

    page.get_by_label("Group by").select_option("day")
    page.get_by_role("button", name="Show report").click()
    page.locator("#chart-caption", has_text="per day").wait_for()
    assert page.locator("#report-table tbody tr").count() == 30

    page.get_by_label("Group by").select_option("setting")
    page.get_by_role("button", name="Show report").click()
    page.locator("#chart-caption", has_text="per setting").wait_for()
    page.locator("#report-table tbody th", has_text="community pharmacy").wait_for()
    page.set_viewport_size({"width": 1100, "height": 900})
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "reports.png"), full_page=True)
    page.set_viewport_size({"width": 400, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    assert page.problems == []

    # A window the API refuses is explained, and the page stays usable.
    page.get_by_label("Contacts from").fill("2099-01-01")
    page.get_by_role("button", name="Show report").click()
    page.locator("#report-status[data-kind='error']").wait_for()
    assert "from: Must be before" in page.locator("#report-status").inner_text()
    assert page.locator("#workspace").is_visible()


@pytest.mark.browser
def test_a_person_signs_in_reaches_the_rule_editor_and_signs_out(
        live_server: str, page: Any, app: Any) -> None:
    add_person(app.extensions["mecc"].db, role="clinical_safety_officer",
               organisation="Y02345")
    page.goto(f"{live_server}/sign-in?next=/admin/rules")
    page.get_by_label("Email address").fill("ann.lead@example.org")
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").get_by_text("The email address or password is not right.") \
        .wait_for()
    page.problems.clear()  # the browser logs the refused sign-in's 401 as an error

    sign_in_on_page(page, live_server, "ann.lead@example.org")
    who = page.locator("#signed-in-as")
    assert "Ann Lead" in who.inner_text() and "clinical safety officer" in who.inner_text()
    page.locator("#rule-list tbody tr").first.wait_for()
    assert page.locator("#workspace").is_visible()
    # The session cookie is out of reach of any script on the page (HttpOnly).
    assert "mecc_session" not in page.evaluate("document.cookie")
    assert any(c["name"] == "mecc_session" and c["httpOnly"] and c["sameSite"] == "Lax"
               for c in page.context.cookies())

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_server}/sign-in")
    page.goto(f"{live_server}/admin/rules")
    assert page.get_by_role("heading", name="Sign in").is_visible()
    assert page.locator("#rule-list").count() == 0
