"""person.display is held for a limited time: with a retention window of seconds, the label
goes from the open screen, from the database (the beat task) and from every answer after it.

A stack of its own (API, worker and beat with MECC_DISPLAY_RETENTION_HOURS=0.002, 7.2 s): the
window is read by the worker that erases and by the page that hides."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from sqlalchemy import select

from mecc.platform.db import Database
from mecc.store.models import Event
from tests.browser.conftest import LiveStack, running_stack
from tests.browser.screens import (
    WAIT_MS,
    bearer,
    open_screen,
    person,
    send,
    shown_prompts,
    stream_token,
    unique,
    wait_for_cards,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
WINDOW_HOURS = 0.002  # 7.2 s


@pytest.fixture(scope="module")
def short_window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with running_stack(tmp_path_factory.mktemp("retention"), beat=True,
                       MECC_DISPLAY_RETENTION_HOURS=str(WINDOW_HOURS)) as stack:
        yield stack


def stored_label(stack: Any, event_id: str) -> str | None:
    db = Database(stack.database_url)
    try:
        with db.session() as session:
            return session.scalar(select(Event.person_display).where(Event.id == event_id))
    finally:
        db.dispose()


def test_the_label_is_gone_after_the_retention_window(browser: Any,
                                                      short_window: LiveStack) -> None:
    team, who, label = unique("team"), unique("p-eve"), "Eve Example, MRN 4242"
    page = open_screen(browser, short_window, stream_token(short_window, team=team))
    event_id, occurred = send(short_window, team, person(who, label),
                              {"smoking_status": "current"}, minutes_ago=0)
    section = wait_for_cards(page, event_id, 1)
    assert section.locator(".person-label").inner_text() == label
    assert shown_prompts(short_window, event_id)[0]["person"]["display"] == label
    assert stored_label(short_window, event_id) == label

    # The open page drops it when the window ends (it checks every 15 s) ...
    page.wait_for_function(
        "id => document.querySelector(`section[data-event='${id}'] .person-label`)"
        ".textContent.startsWith('Person ')", arg=event_id, timeout=WAIT_MS + 15_000)
    assert section.locator(".person-label").inner_text() == f"Person {who}"
    elapsed = (datetime.now(UTC) - occurred).total_seconds()
    assert elapsed >= WINDOW_HOURS * 3600

    # ... the beat task nulls the one stored copy, and no answer carries it any more.
    deadline = time.monotonic() + 20
    while stored_label(short_window, event_id) is not None:
        assert time.monotonic() < deadline, "the label was not erased"
        time.sleep(0.5)
    assert shown_prompts(short_window, event_id)[0]["person"]["display"] is None
    detail = requests.get(f"{short_window.base}/api/v1/events/{event_id}",
                          headers=bearer(short_window.key), timeout=10).json()
    assert "display" not in detail["person"]
    assert all(p["person"]["display"] is None for p in detail["prompts"])
    page.reload()
    page.wait_for_selector("#connection[data-state=live]", timeout=WAIT_MS)
    wait_for_cards(page, event_id, 1)
    assert label not in page.content()
    assert page.errors == []
