"""No SQL parameters or health data in a log line (issue 13, finding 6), whoever logs it."""

from __future__ import annotations

import io
import json
import logging
import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError

from mecc.platform.observability import configure_logging

NOTE = "Ann, NHS 943 476 5919, lives alone"


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    configure_logging("INFO")
    [handler] = logging.getLogger().handlers
    captured = io.StringIO()
    monkeypatch.setattr(handler, "stream", captured)
    return captured


def database_error() -> IntegrityError:
    try:
        try:
            raise sqlite3.IntegrityError(f"CHECK constraint failed: note <> '{NOTE}'")
        except sqlite3.IntegrityError as driver:
            raise IntegrityError("INSERT INTO prompt_outcomes (note) VALUES (?)", (NOTE,),
                                 driver) from driver
    except IntegrityError as exc:
        return exc


def test_a_library_quoting_a_database_error_logs_none_of_its_values(logged: io.StringIO) -> None:
    exc = database_error()
    # What Celery's tracer writes for a task that failed.
    logging.getLogger("celery.app.trace").error(
        "Task mecc.evaluate_events[1] raised unexpected: %r", exc, exc_info=exc)
    line = json.loads(logged.getvalue())
    text = json.dumps(line)
    assert "Ann" not in text and "5919" not in text and "lives alone" not in text
    assert "withheld" in line["event"] and "withheld" in line["exception"]
    assert "INSERT INTO prompt_outcomes" in line["exception"]  # the statement, not its values
    assert "sqlite3.IntegrityError" in line["exception"]


def test_nhs_numbers_are_blanked_in_any_message(logged: io.StringIO) -> None:
    logging.getLogger("somewhere").warning("could not parse %s or 1234567890", "9434765919")
    line = json.loads(logged.getvalue())
    assert line["event"] == "could not parse [nhs-number] or 1234567890"  # not a valid one
