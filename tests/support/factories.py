"""Request bodies and database rows with sensible defaults; a test names only what it is about.

Bodies: make_event (a valid contact event). Requests: auth_header, post_event, assert_problem.
Rows: add_key, add_prompt (with the event it came from), add_push_message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mecc.admin.keys import CreatedKey
    from mecc.platform.db import Database
    from mecc.store.models import Prompt, PushMessage

PROBLEM_JSON = "application/problem+json"
DEFAULT_SCOPES = ("events:write", "prompts:read", "prompts:write")


# ---------------------------------------------------------------------------------- bodies


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid contact event (the CONTRACT.md example, with a fresh id and a recent time)."""
    body: dict[str, Any] = {
        "event_id": f"ev-{uuid.uuid4().hex[:12]}",
        "source": "emis-web",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "organisation": "Y02345",
        "setting": "general_practice",
        "contact_type": "appointment",
        "staff": {"id": "st-991", "role": "practice_nurse", "team": "blue"},
        "person": {
            "id": "p-7f3a1c",
            "nhs_number": "9434765919",
            "birth_date": "1971-04-02",
            "sex": "female",
            "ethnicity_group": "south_asian",
            "postcode_district": "M14",
        },
        "facts": {"smoking_status": "current", "bmi": 28.4, "audit_c": 6, "phq2": 1},
        "conditions": [
            {"system": "http://snomed.info/sct", "code": "44054006",
             "display": "Type 2 diabetes mellitus", "onset_date": "2026-09-30"}
        ],
        "preferences": {"opted_out": False, "declined_topics": ["alcohol"]},
    }
    body.update(overrides)
    return body


# ---------------------------------------------------------------------------------- requests


def auth_header(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post_event(client: Any, key: str, body: dict[str, Any]) -> str:
    """POST one event with a Flask test client; it must be accepted. Its id."""
    response = client.post("/api/v1/events", json=body, headers=auth_header(key))
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def assert_problem(response: Any, status: int, *paths: str) -> dict[str, Any]:
    """An RFC 9457 problem with this status, naming each of `paths` in `errors`."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = json.loads(response.get_data(as_text=True))
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    if status == 422:
        assert isinstance(body.get("errors"), dict) and body["errors"], body
        for path, messages in body["errors"].items():
            assert isinstance(path, str) and messages and all(isinstance(m, str)
                                                             for m in messages), body
    for path in paths:
        assert path in body.get("errors", {}), (path, body)
    return body


# ---------------------------------------------------------------------------------- rows


def add_key(db: Database, *, organisation: str = "Y02345",
            scopes: Sequence[str] = DEFAULT_SCOPES, callback_hosts: Sequence[str] = (),
            name: str = "test") -> CreatedKey:
    """An API key, committed (`db` is the app's: app.extensions["mecc"].db)."""
    from mecc.admin import keys

    with db.session() as session:
        created = keys.create_key(session, name=name, organisation=organisation,
                                  scopes=list(scopes), callback_hosts=list(callback_hosts))
        session.commit()
    return created


def add_prompt(session: Session, *, organisation: str = "Y02345", team: str | None = "blue",
               staff_id: str = "st-1", source: str = "test", person_id: str = "p-1",
               at: datetime | None = None, **fields: Any) -> Prompt:
    """A prompt and the evaluated event it came from, added and flushed (not committed).
    `fields` set any other Prompt column (summary, status, priority, suggestions ...)."""
    from mecc.store.models import Event, Prompt, new_id

    now = at or datetime.now(UTC)
    event = Event(source=source, event_id=uuid.uuid4().hex, body_hash="x",
                  organisation=organisation, setting="general_practice", staff_id=staff_id,
                  team=team, person_id=person_id, occurred_at=now, payload={},
                  status="evaluated", evaluated_at=now)
    session.add(event)
    session.flush()
    values: dict[str, Any] = dict(
        id=new_id(), event_id=event.id, source=source, person_id=person_id,
        organisation=organisation, setting="general_practice", team=team, staff_id=staff_id,
        rule_key="test-rule", rule_version=1, topic="smoking", kind="lifestyle_conversation",
        priority=50, indicator="info", summary=f"Prompt {now:%H%M%S%f}", detail="Talk.",
        suggestions=[], sources=[], status="new", contact_at=now, created_at=now,
        updated_at=now)
    values.update(fields)
    prompt = Prompt(**values)
    session.add(prompt)
    session.flush()
    return prompt


def add_push_message(session: Session, prompt: Prompt, kind: str = "prompt") -> PushMessage:
    """The push message announcing `prompt` (or its update), added and flushed: what the worker
    and the outcome service store before they publish."""
    from mecc.store.models import PushMessage

    message = PushMessage(kind=kind, prompt_id=prompt.id, organisation=prompt.organisation,
                          team=prompt.team, staff_id=prompt.staff_id,
                          created_at=datetime.now(UTC))
    session.add(message)
    session.flush()
    return message
