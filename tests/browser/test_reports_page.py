"""The reports dashboard and the referral follow-up page in headless Chromium, at 1024 px.

The app is served by a real HTTP server (werkzeug, in a thread) on a test database; a person
signs in and the pages get their data from the API. Screenshots go to docs/.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from tests.support.factories import add_prompt, auth_header, make_event, post_event
from tests.support.people import add_person, sign_in_on_page

DOCS = ROOT / "docs"
TIMEOUT_MS = 15_000
WIDTH = 1024
SERVICE = "example-mcr-stop-smoking"

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": WIDTH, "height": 900},
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    yield page
    context.close()


def _seed(app: Any, client: Any, make_key: Any, evaluate_pending: Callable[[], int]) -> None:
    """A month of prompts across people and teams; a rule staff mostly turn down; referrals
    with statuses and the people's own answers."""
    rng = random.Random(14)  # noqa: S311 - test data, not secrets
    now = datetime.now(UTC)
    statuses = ["new", "conversation_had", "conversation_had", "referred", "declined",
                "not_now", "deferred"]
    groups = [("white", "45-54", "female", "M20", 40), ("south_asian", "25-34", "male", "M14",
              30), ("black_african", "65-74", "female", "M15", 12), ("chinese", "75+", "male",
              "LS6", 3), (None, None, None, None, 6)]
    with app.extensions["mecc"].db.session() as session:
        for ethnicity, band, sex, district, count in groups:
            for _ in range(count):
                add_prompt(session, at=now - timedelta(days=rng.randrange(25), minutes=1),
                           ethnicity_group=ethnicity, age_band=band, sex=sex,
                           postcode_district=district, status=rng.choice(statuses),
                           staff_id=rng.choice(["st-1", "st-2", "st-3", "st-4"]),
                           team=rng.choice(["blue", "red"]),
                           topic=rng.choice(["smoking", "alcohol", "healthy_weight"]),
                           rule_key=rng.choice(["smoking-very-brief-advice",
                                                "alcohol-brief-intervention"]))
        for n in range(24):  # a rule staff mostly turn down
            add_prompt(session, at=now - timedelta(days=n % 20, hours=1),
                       rule_key="healthy-weight-conversation", topic="healthy_weight",
                       status="declined" if n % 6 else "conversation_had", team="blue")
        session.commit()
    writer = make_key()
    for n in range(7):
        body = make_event(person={"id": f"ref-{n}", "age": 40 + n}, conditions=[],
                          facts={"smoking_status": "current"},
                          preferences={"opted_out": False, "declined_topics": []})
        post_event(client, writer, body)
    evaluate_pending()
    prompts = [p for p in client.get("/api/v1/prompts?topic=smoking&status=new&limit=500",
                                     headers=auth_header(writer)).json["items"]
               if p["person_id"].startswith("ref-")]
    for n, prompt in enumerate(prompts):
        client.post(f"/api/v1/prompts/{prompt['id']}/outcome", headers=auth_header(writer),
                    json={"outcome": "referred", "service_id": SERVICE})
        referral = client.get(f"/api/v1/referrals?prompt={prompt['id']}",
                              headers=auth_header(writer)).json["items"][0]
        for status in ("accepted", "attended", "closed")[:n % 4]:
            client.post(f"/api/v1/referrals/{referral['id']}/status", json={"status": status},
                        headers=auth_header(writer))
        client.post(f"/api/v1/referrals/{referral['id']}/personal-outcomes",
                    headers=auth_header(writer), json={
                        "recorded_at": now.isoformat(),
                        "scores": {"better_able_to_manage": 3 + n % 3, "hope_for_future": 4}})


def _fits(page: Any) -> None:
    """Nothing scrolls sideways and every rate is on screen."""
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    overflowing = page.evaluate(
        "Array.from(document.querySelectorAll('.table-wrap'))"
        ".filter(w => w.offsetParent && w.scrollWidth > w.clientWidth + 1).length")
    assert overflowing == 0
    rates = page.locator(".report-table small.rate")
    assert rates.count() > 20
    for n in range(rates.count()):
        box = rates.nth(n).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH


@pytest.mark.browser
def test_the_dashboard_shows_every_report_at_1024_px(live_server: str, page: Any, app: Any,
                                                     client: Any, make_key: Any,
                                                     evaluate_pending: Callable[[], int],
                                                     tmp_path: Path) -> None:
    _seed(app, client, make_key, evaluate_pending)
    email = add_person(app.extensions["mecc"].db, "lead@example.org", role="viewer",
                       name="Pat Lead")
    sign_in_on_page(page, live_server, email, next_path="/reports")

    page.locator("#referrals table#x-table tbody tr").first.wait_for()
    words = page.locator("#window-words").inner_text()
    assert re.match(r"Contacts from \d{1,2} [A-Z][a-z]{2}( \d{4})? to \d{1,2} [A-Z][a-z]{2} "
                    r"\d{4}, every organisation you may see\.", words), words
    assert "UTC window" not in page.content()

    # Who prompts reach: groups with their shares, small ones hidden as "<5".
    equity = page.locator("#equity")
    assert equity.locator("svg rect").count() > 5
    assert equity.locator("#e-table tbody th", has_text="South asian").count() == 1
    assert equity.locator("#e-table td.hidden", has_text="hidden").count() > 0
    assert "hidden" in page.locator("#e-suppression").inner_text()

    fatigue = page.locator("#f-table tr.flagged")
    assert fatigue.count() == 1 and "healthy-weight-conversation" in fatigue.inner_text()
    assert page.locator("#l-totals").inner_text().count("\n") >= 4
    assert page.locator("#l-table tbody tr").count() == 2
    assert "Taken on by the service" in page.locator("#x-chart").inner_html()
    assert page.locator("#x-scores tbody tr").count() == 6

    _fits(page)
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "reports-dashboard.png"), full_page=True)

    page.get_by_label("People by").select_option("age_band")
    page.locator("#e-table tbody th", has_text="65–74").wait_for()
    bands = page.locator("#e-table tbody th").all_inner_texts()
    assert bands == sorted(bands, key=lambda b: ("Not known" in b, b)), "bands in order"

    with page.expect_download() as waiting:
        page.locator("#equity [data-csv]").click()
    download = waiting.value
    assert re.match(r"mecc-outcomes-by-age_band-\d{4}-\d\d-\d\d-to-\d{4}-\d\d-\d\d\.csv$",
                    download.suggested_filename)
    saved = tmp_path / "equity.csv"
    download.save_as(saved)
    lines = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [line["age_band"] for line in lines][-1] == "All"
    assert any(line["created"] == "<5" for line in lines)

    # The rule editor tags the rule staff mostly turn down, and only that one.
    page.goto(f"{live_server}/admin/rules")
    tag = page.locator("#rule-list tr[data-key='healthy-weight-conversation'] .fatigue")
    tag.wait_for()
    assert "Often turned down (83.3%)" in tag.inner_text()
    assert page.locator("#rule-list .fatigue").count() == 1
    assert page.problems == []


@pytest.mark.browser
def test_a_link_worker_follows_up_a_referral(live_server: str, page: Any, app: Any,
                                              client: Any, make_key: Any,
                                              evaluate_pending: Callable[[], int]) -> None:
    writer = make_key()
    post_event(client, writer, make_event(person={"id": "p-walk", "age": 61}, conditions=[],
                                          facts={"smoking_status": "current"},
                                          preferences={"opted_out": False,
                                                       "declined_topics": []}))
    evaluate_pending()
    prompt = client.get("/api/v1/prompts?topic=smoking", headers=auth_header(writer)).json[
        "items"][0]
    client.post(f"/api/v1/prompts/{prompt['id']}/outcome", headers=auth_header(writer),
                json={"outcome": "referred", "service_id": SERVICE})
    email = add_person(app.extensions["mecc"].db, "link.worker@example.org", role="admin",
                       organisation="Y02345", name="Lee Worker")
    sign_in_on_page(page, live_server, email, next_path="/referrals")

    page.get_by_role("button", name=re.compile("Open referral of p-walk")).click()
    page.locator("#referral-heading", has_text="Referral to").wait_for()
    page.get_by_label("Note (optional").fill("First session booked")
    page.get_by_role("button", name="Mark accepted").click()
    page.locator("#status-result", has_text="Now: Accepted").wait_for()
    page.get_by_role("button", name="Mark attended").click()
    page.locator("#status-result", has_text="Now: Attended").wait_for()
    assert "First session booked" in page.locator("#referral-history").inner_text()

    page.locator("#s-better_able_to_manage").get_by_label("4", exact=True).check()
    page.locator("#s-hope_for_future").get_by_label("5", exact=True).check()
    page.get_by_role("button", name="Record answers").click()
    page.locator("#outcome-result", has_text="Answers recorded").wait_for()
    assert page.locator("#outcome-list tbody tr").count() == 1
    _no_sideways_scroll(page)
    page.screenshot(path=str(DOCS / "referrals.png"), full_page=True)

    referral = client.get(f"/api/v1/referrals?prompt={prompt['id']}",
                          headers=auth_header(writer)).json["items"][0]
    detail = client.get(f"/api/v1/referrals/{referral['id']}", headers=auth_header(writer)).json
    assert detail["status"] == "attended"
    assert detail["personal_outcomes"][0]["scores"] == {"better_able_to_manage": 4,
                                                        "hope_for_future": 5}
    assert page.problems == []


def _no_sideways_scroll(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
