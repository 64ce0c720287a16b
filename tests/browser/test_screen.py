"""The staff screen in headless Chromium against a real API and worker: each contact's prompts
under whose they are and when, services linked from the directory, outcomes (a referral names
its service) that reach every open screen, controls that tell the truth, screens narrowed to
one person, untrusted text shown as text, and nothing axe-core calls serious."""

from __future__ import annotations

import json
import subprocess
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
import requests

from mecc.clinical.directory import load_services
from mecc.delivery import push
from mecc.intake.contacts import contact_of
from mecc.intake.read import prompt_dict
from mecc.platform.db import Database
from mecc.store.models import Event
from tests.browser.screens import (
    WAIT_MS,
    bearer,
    contact,
    open_screen,
    person,
    send,
    shown_prompts,
    stream_token,
    unique,
    wait_for_cards,
)
from tests.support import ROOT
from tests.support.accessibility import axe_violations
from tests.support.factories import add_prompt, add_push_message
from tests.support.processes import MECC
from tests.support.stack import STREAM_REDIS_URL, create_key

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DOCS = ROOT / "docs"
LONDON = ZoneInfo("Europe/London")
SERVICES = {s.id: s for s in load_services(ROOT / "config" / "services")}
STOP_SMOKING = SERVICES["example-mcr-stop-smoking"]


def card_on(section: Any, topic: str) -> Any:
    return section.locator("li.card-item", has=section.page.locator(".topic", has_text=topic))


def tab_to(page: Any, selector: str, presses: int = 80) -> None:
    """Move focus with the Tab key alone until `selector` has it."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    pytest.fail(f"Tab never reached {selector}")


def test_two_people_at_two_contacts_for_one_nurse(browser: Any, live_stack: Any) -> None:
    team = unique("team")
    ann_id, bob_id = unique("p-ann"), unique("p-bob")
    ann_label, bob_label = "Ann Example, 54 F, MRN 1234", "Bob Sample, 67 M, MRN 5678"
    weighed = date.today() - timedelta(days=40)
    ann_event, ann_at = send(live_stack, team, person(ann_id, ann_label),
                             {"smoking_status": "current", "bmi": 32.1}, minutes_ago=25,
                             fact_dates={"bmi": weighed.isoformat()})
    bob_event, bob_at = send(live_stack, team, person(bob_id, bob_label, age=67, sex="male"),
                             {"phq2": 4}, minutes_ago=3)
    token = stream_token(live_stack, team=team, staff_id="st-991")
    nurse = open_screen(browser, live_stack, token)
    colleague = open_screen(browser, live_stack, token, width=1024)
    ann_count, bob_count = (len(shown_prompts(live_stack, e)) for e in (ann_event, bob_event))
    assert (ann_count, bob_count) == (2, 1)  # smoking and weight; mental wellbeing
    ann, bob = wait_for_cards(nurse, ann_event, ann_count), wait_for_cards(nurse, bob_event,
                                                                            bob_count)

    # Newest contact first and open; each header says whose prompts and when.
    first = nurse.locator("#contacts section.contact").first
    assert first.get_attribute("data-event") == bob_event
    assert bob.locator(".contact-toggle").get_attribute("aria-expanded") == "true"
    assert ann.locator(".contact-toggle").get_attribute("aria-expanded") == "false"
    for section, label, at, who in ((ann, ann_label, ann_at, ann_id),
                                    (bob, bob_label, bob_at, bob_id)):
        assert section.locator(".person-label").inner_text() == label
        assert section.locator("time").inner_text() == at.astimezone(LONDON).strftime("%H:%M")
        assert "min ago" in section.locator(".ago").inner_text()
        assert section.locator(".where").inner_text() == "General practice, appointment"
        assert who in section.locator(".person-facts").inner_text()
    assert "67 years · Male" in bob.locator(".person-facts").inner_text()
    # Every card under a header is that person's, and every one of theirs is there.
    for event_id, section in ((ann_event, ann), (bob_event, bob)):
        on_screen = {c.get_attribute("data-prompt-id")
                     for c in section.locator("li.card-item").all()}
        assert on_screen == {p["id"] for p in shown_prompts(live_stack, event_id)}

    # Words a nurse reads at a glance: the reading, the topic and the priority in words.
    phq = card_on(bob, "Mental wellbeing")
    assert "PHQ-2 of 4" in phq.locator(".reading").inner_text()
    priorities = {p.inner_text() for p in nurse.locator(".priority").all()}
    assert priorities and priorities <= {"Urgent", "Important", "Routine"}

    ann.locator(".contact-toggle").click()
    weight = card_on(ann, "Healthy weight")
    assert f"BMI 32.1 on {weighed.day} " in weight.locator(".reading").inner_text()
    # The directory's own links, on the card.
    smoking = card_on(ann, "Smoking")
    service = smoking.locator(f"li.service[data-service-id='{STOP_SMOKING.id}']")
    assert service.locator("a.website").get_attribute("href") == STOP_SMOKING.contact["url"]
    assert service.locator("a.referral").get_attribute("href") == STOP_SMOKING.referral_url
    assert service.locator("a.phone").inner_text() == STOP_SMOKING.contact["phone"]
    assert axe_violations(nurse) == []
    DOCS.mkdir(exist_ok=True)
    nurse.screenshot(path=str(DOCS / "screen-1366.png"), full_page=True)

    # "Referred" asks where to; one click records the service, with a note.
    smoking.locator("details.note > summary").click()
    smoking.locator(".note-text").fill("Leaflet given")
    smoking.locator("button[data-outcome=referred]").click()
    smoking.locator(".refer-panel").wait_for()
    assert axe_violations(nurse) == []
    smoking.locator(f"button.refer-choice[data-service-id='{STOP_SMOKING.id}']").click()
    prompt_id = smoking.get_attribute("data-prompt-id")
    for page in (nurse, colleague):
        page.wait_for_selector(f"li[data-prompt-id='{prompt_id}'][data-status=referred]",
                               state="attached", timeout=WAIT_MS)
    recorded = requests.get(f"{live_stack.base}/api/v1/prompts/{prompt_id}",
                            headers=bearer(live_stack.key), timeout=10).json()["outcomes"][-1]
    assert (recorded["outcome"], recorded["service_id"], recorded["staff_id"],
            recorded["note"]) == ("referred", STOP_SMOKING.id, "st-991", "Leaflet given")
    # The handled card folds to one line: what, where to, and who recorded it.
    line = smoking.locator(".handled-line").inner_text()
    assert f"Referred to {STOP_SMOKING.name}" in line and "recorded by st-991" in line
    assert smoking.locator(".card-body").is_hidden()

    # The keyboard alone records an outcome (from the top of the page), and focus is not lost.
    phq_card = f"li[data-prompt-id='{phq.get_attribute('data-prompt-id')}']"
    nurse.locator("h1").click()
    tab_to(nurse, f"{phq_card} button[data-outcome=not_now]")
    nurse.keyboard.press("Enter")
    for page in (nurse, colleague):
        page.wait_for_selector(f"{phq_card}[data-status=not_now]", state="attached",
                               timeout=WAIT_MS)
    assert "toggle" in nurse.evaluate("document.activeElement.className")

    # Bob's only prompt has an outcome: his contact folds into "Earlier"; Ann's stays.
    colleague.wait_for_selector(f"#earlier-contacts section[data-event='{bob_event}']",
                                state="attached", timeout=WAIT_MS)
    colleague.locator("#earlier-toggle").click()
    assert colleague.locator(f"#contacts section[data-event='{ann_event}']").is_visible()
    assert axe_violations(colleague) == []
    colleague.screenshot(path=str(DOCS / "screen-1024.png"), full_page=True)
    assert nurse.errors == [] and colleague.errors == []

    # A screen opened later starts with the recent prompts, statuses included.
    late = open_screen(browser, live_stack, token, width=400)
    late.wait_for_selector(f"li[data-prompt-id='{prompt_id}'][data-status=referred]",
                           state="attached", timeout=WAIT_MS)
    assert late.evaluate("document.documentElement.scrollWidth") <= 400


def test_a_read_only_screen_offers_no_outcome_buttons(browser: Any, live_stack: Any) -> None:
    reader = create_key(live_stack.env, live_stack.organisation, ("prompts:read",))
    team = unique("team")
    page = open_screen(browser, live_stack, stream_token(live_stack, reader.key, team=team))
    event_id, _ = send(live_stack, team, person(unique("p")), {"smoking_status": "current"})
    wait_for_cards(page, event_id, 1)
    assert page.locator("button.outcome").count() == 0
    assert page.locator(".record").count() == 0
    reason = page.locator("#read-only")
    assert reason.is_visible() and "cannot record outcomes" in reason.inner_text()
    assert page.errors == []


def test_a_failed_outcome_says_what_to_do(browser: Any, live_stack: Any) -> None:
    revocable = create_key(live_stack.env, live_stack.organisation)
    team = unique("team")
    page = open_screen(browser, live_stack, stream_token(live_stack, revocable.key, team=team))
    event_id, _ = send(live_stack, team, person(unique("p")), {"smoking_status": "current"})
    card = wait_for_cards(page, event_id, 1).locator("li.card-item").first
    subprocess.run([MECC, "keys", "revoke", revocable.id], env=live_stack.env, check=True,
                   capture_output=True, timeout=60)
    card.locator("button[data-outcome=not_now]").click()
    error = card.locator(".card-error")
    error.wait_for(timeout=WAIT_MS)
    assert "Not saved" in error.inner_text()
    assert "Open the prompt screen again from your clinical system" in error.inner_text()
    assert card.get_attribute("data-status") == "new"


def test_a_screen_for_one_person_shows_only_theirs(browser: Any, live_stack: Any) -> None:
    team = unique("team")
    cara, dan = unique("p-cara"), unique("p-dan")
    cara_first, _ = send(live_stack, team, person(cara, "Cara Example"),
                         {"smoking_status": "current"}, minutes_ago=10)
    dan_first, _ = send(live_stack, team, person(dan, "Dan Example"),
                        {"smoking_status": "current"}, minutes_ago=9)
    page = open_screen(browser, live_stack,
                       stream_token(live_stack, team=team, person_id=cara, source="emis-web"))
    wait_for_cards(page, cara_first, 1)
    assert "prompts for person" in page.locator("#scope").inner_text()

    # Live: Dan's new contact never arrives; Cara's, sent after it, does.
    dan_later, _ = send(live_stack, team, person(dan, "Dan Example"), {"phq2": 5})
    cara_later, _ = send(live_stack, team, person(cara, "Cara Example"), {"phq2": 4})
    wait_for_cards(page, cara_later, 1)
    people = {s.get_attribute("data-person-id")
              for s in page.locator("section.contact").all()}
    assert people == {cara}
    for other in (dan_first, dan_later):
        assert contact(page, other).count() == 0
    assert "Dan Example" not in page.content()

    # One contact: only that contact's prompts.
    one = open_screen(browser, live_stack, stream_token(live_stack, team=team, event=cara_first))
    wait_for_cards(one, cara_first, 1)
    assert {s.get_attribute("data-event") for s in one.locator("section.contact").all()} == {
        cara_first}
    assert page.errors == [] and one.errors == []


def test_untrusted_text_is_shown_as_text(browser: Any, live_stack: Any) -> None:
    team = unique("team")
    page = open_screen(browser, live_stack, stream_token(live_stack, team=team,
                                                         staff_id="st-1"))
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
                suggestions=[{"label": hostile, "name": hostile, "service_id": "x",
                              "contact": {"phone": hostile, "url": "javascript:alert(1)"},
                              "referral_url": "javascript:alert(1)"}],
                sources=[{"label": "Evil", "url": "javascript:alert(1)"}],
                evidence=[{"fact": hostile, "value": hostile, "recorded_at": None}])
            event = session.get_one(Event, prompt.event_id)
            event.person_display = hostile
            message = add_push_message(session, prompt)
            session.commit()
            wire = json.dumps(push.message_dict(message, prompt_dict(prompt,
                                                                     contact_of(event))))
    finally:
        db.dispose()
    client = redis.Redis.from_url(STREAM_REDIS_URL)
    client.publish(push.channel_for(STREAM_REDIS_URL), wire)
    client.close()

    card = page.locator("li.card-item").first
    card.wait_for(timeout=WAIT_MS)
    card.locator("details.detail > summary").click()
    assert hostile in card.locator(".summary").inner_text()
    assert hostile in page.locator(".person-label").inner_text()
    assert page.locator("img").count() == 0
    assert card.locator(".priority").inner_text() == "Urgent"
    assert card.locator(".detail-body strong").inner_text() == "bold"
    links = [a.get_attribute("href") for a in page.locator("a").all()]
    assert "https://example.org" in links
    assert not any(h and h.lower().startswith("javascript:") for h in links)
    assert page.title() != "pwned" and page.errors == []
