"""What the staff screen's browser tests share: stream tokens, contacts sent for a nurse,
screens opened in Chromium and the cards waited for on them."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from tests.support.factories import make_event

WAIT_MS = 20_000


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def stream_token(stack: Any, key: str | None = None, **body: Any) -> str:
    r = requests.post(f"{stack.base}/api/v1/stream-tokens",
                      json={"organisation": stack.organisation, **body},
                      headers=bearer(key or stack.key), timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def person(person_id: str, display: str | None = None, **more: Any) -> dict[str, Any]:
    # No NHS number: each test's people must not share a history with another test's.
    body: dict[str, Any] = {"id": person_id, "age": 54, "sex": "female",
                            "postcode_district": "M14", **more}
    if display is not None:
        body["display"] = display
    return body


def send(stack: Any, team: str, who: dict[str, Any], facts: dict[str, Any], *,
         minutes_ago: float = 1, **extra: Any) -> tuple[str, datetime]:
    """POST a contact for the nurse st-991 of `team`; the event's id and when it was."""
    occurred = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    body = make_event(organisation=stack.organisation, occurred_at=occurred.isoformat(),
                      staff={"id": "st-991", "role": "practice_nurse", "team": team},
                      person=who, facts=facts, conditions=[],
                      preferences={"opted_out": False, "declined_topics": []}, **extra)
    r = requests.post(f"{stack.base}/api/v1/events", json=body, headers=bearer(stack.key),
                      timeout=10)
    assert r.status_code == 202, r.text
    return str(r.json()["id"]), occurred


def shown_prompts(stack: Any, event_id: str) -> list[dict[str, Any]]:
    """The prompts the event's evaluation showed (waiting for the worker to evaluate it)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while requests.get(f"{stack.base}/api/v1/events/{event_id}", headers=bearer(stack.key),
                       timeout=10).json()["status"] != "evaluated":
        assert time.monotonic() < deadline, "the worker did not evaluate the event"
        time.sleep(0.1)
    r = requests.get(f"{stack.base}/api/v1/prompts", params={"event": event_id},
                     headers=bearer(stack.key), timeout=10)
    assert r.status_code == 200, r.text
    return [p for p in r.json()["items"] if p["status"] != "deferred"]


def open_screen(browser: Any, stack: Any, token: str, width: int = 1366) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900},
                                  timezone_id="Europe/London", locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{stack.base}/screen?token={token}")
    page.wait_for_selector("#connection[data-state=live]", timeout=WAIT_MS)
    return page


def contact(page: Any, event_id: str) -> Any:
    return page.locator(f"section.contact[data-event='{event_id}']")


def wait_for_cards(page: Any, event_id: str, count: int) -> Any:
    page.wait_for_function(
        "([id, n]) => document.querySelectorAll("
        "`section.contact[data-event='${id}'] li.card-item`).length >= n",
        arg=[event_id, count], timeout=WAIT_MS)
    return contact(page, event_id)
