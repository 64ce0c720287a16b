"""The staff screen in headless Chromium: live cards from a real worker, one-click outcomes
that update every open screen, keyboard use, and untrusted text shown as text."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis
import requests

from mecc.delivery import push
from mecc.intake.read import prompt_dict
from mecc.platform.db import Database
from tests.support import ROOT
from tests.support.factories import add_prompt, add_push_message, make_event
from tests.support.stack import STREAM_REDIS_URL

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCREENSHOT = ROOT / "docs" / "screen.png"
WAIT_MS = 20_000


def stream_token(stack: Any, team: str, staff_id: str) -> str:
    r = requests.post(f"{stack.base}/api/v1/stream-tokens",
                      json={"organisation": stack.organisation, "team": team,
                            "staff_id": staff_id},
                      headers={"Authorization": f"Bearer {stack.key}"}, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def open_screen(browser: Any, stack: Any, token: str, width: int = 520) -> Any:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{stack.base}/screen?token={token}")
    page.wait_for_selector("#connection[data-state=live]", timeout=WAIT_MS)
    return page


def test_live_cards_and_outcomes_on_two_screens(browser: Any, live_stack: Any) -> None:
    team, staff = f"team-{uuid.uuid4().hex[:6]}", "st-991"
    token = stream_token(live_stack, team, staff)
    nurse = open_screen(browser, live_stack, token)
    colleague = open_screen(browser, live_stack, token)
    assert nurse.is_visible("#empty")

    body = make_event(organisation=live_stack.organisation,
                      staff={"id": staff, "role": "practice_nurse", "team": team})
    r = requests.post(f"{live_stack.base}/api/v1/events", json=body,
                      headers={"Authorization": f"Bearer {live_stack.key}"}, timeout=10)
    assert r.status_code == 202, r.text

    for page in (nurse, colleague):
        page.wait_for_selector("li.card-item", timeout=WAIT_MS)
    nurse.wait_for_function("document.querySelectorAll('li.card-item').length >= 2",
                            timeout=WAIT_MS)
    cards = nurse.locator("li.card-item")
    first = cards.first
    # The priority is spelled out, not shown by colour alone; new cards are announced.
    assert first.locator(".badge-text").inner_text() in {"Info", "Warning", "Critical"}
    assert "New prompt" in nurse.inner_text("#announcer")
    assert first.locator(".summary").inner_text()
    assert first.locator(".service-list li").count() >= 1
    assert first.locator(".source-list a").count() >= 1
    assert nurse.is_hidden("#empty")

    # Expand the talking points: the markdown renders as lists and bold text.
    first.locator("details.detail > summary").click()
    assert first.locator(".detail-body p, .detail-body li").count() >= 1

    prompt_id = first.get_attribute("data-prompt-id")
    first.locator("button[data-outcome=referred]").click()
    selector = f"li.card-item[data-prompt-id='{prompt_id}']"
    nurse.wait_for_selector(f"{selector}[data-status=referred]", timeout=WAIT_MS)
    colleague.wait_for_selector(f"{selector}[data-status=referred]", timeout=WAIT_MS)
    pressed = colleague.locator(f"{selector} button[data-outcome=referred]")
    assert pressed.get_attribute("aria-pressed") == "true"
    assert colleague.locator(f"{selector} .card-status").inner_text() == "Referred"

    # Keyboard only, from the other screen, back the other way.
    colleague.focus(f"{selector} button[data-outcome=not_now]")
    colleague.keyboard.press("Enter")
    nurse.wait_for_selector(f"{selector}[data-status=not_now]", timeout=WAIT_MS)

    nurse.evaluate("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    nurse.screenshot(path=str(SCREENSHOT))
    assert nurse.errors == [] and colleague.errors == []

    # A screen opened later starts with the recent prompts, statuses included.
    late = open_screen(browser, live_stack, token, width=360)
    late.wait_for_selector(f"{selector}[data-status=not_now]", timeout=WAIT_MS)
    assert late.locator("li.card-item").count() == cards.count()


def test_untrusted_text_is_shown_as_text(browser: Any, live_stack: Any) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    page = open_screen(browser, live_stack, stream_token(live_stack, team, "st-1"))
    hostile = '<img src=x onerror="document.title=\'pwned\'">'
    db = Database(live_stack.database_url)
    try:
        with db.session() as session:
            prompt = add_prompt(
                session, organisation=live_stack.organisation, team=team, staff_id="st-1",
                source="browser-test", rule_key="t", priority=90, indicator="critical",
                summary=f"Summary {hostile}",
                detail=f"Para **bold** {hostile}\n\n- item [ok](https://example.org)\n"
                       "- [bad](javascript:alert(1))",
                suggestions=[{"label": hostile, "name": hostile, "contact": {"phone": hostile},
                              "referral_url": "javascript:alert(1)"}],
                sources=[{"label": "Evil", "url": "javascript:alert(1)"}])
            message = add_push_message(session, prompt)
            session.commit()
            wire = json.dumps(push.message_dict(message, prompt_dict(prompt)))
    finally:
        db.dispose()
    client = redis.Redis.from_url(STREAM_REDIS_URL)
    client.publish(push.channel_for(STREAM_REDIS_URL), wire)
    client.close()

    card = page.locator("li.card-item").first
    card.wait_for(timeout=WAIT_MS)
    card.locator("details.detail > summary").click()
    assert hostile in card.locator(".summary").inner_text()
    assert card.locator("img").count() == 0
    assert card.locator(".badge-text").inner_text() == "Critical"
    assert card.locator(".detail-body strong").inner_text() == "bold"
    links = [a.get_attribute("href") for a in card.locator("a").all()]
    assert "https://example.org" in links
    assert not any(h and h.startswith("javascript:") for h in links)
    assert page.title() != "pwned" and page.errors == []
