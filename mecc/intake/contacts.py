"""Whose prompt it is and what was done with it: the `person`, `contact` and `last_outcome` a
prompt is shown with, read from the stored event and outcome history in one query each.

The display label comes from `events.person_display` (mecc.intake.display) every time a prompt
is shown, so once it is erased no new answer, stream message or webhook carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mecc.clinical.record import as_date
from mecc.clinical.ruleset import age_on
from mecc.clinical.suppression import as_utc
from mecc.people.accounts import USER_PREFIX
from mecc.store.models import ApiKey, Event, PromptOutcome, User


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


@dataclass(frozen=True)
class ContactView:
    """The person and the contact a prompt was made at, as staff see them."""

    person_id: str
    display: str | None
    age: int | None
    sex: str | None
    occurred_at: datetime
    setting: str
    contact_type: str | None

    def person(self) -> dict[str, Any]:
        return {"id": self.person_id, "display": self.display, "age": self.age, "sex": self.sex}

    def contact(self) -> dict[str, Any]:
        return {"occurred_at": iso(self.occurred_at), "setting": self.setting,
                "contact_type": self.contact_type}


def _age(person: Mapping[str, Any], occurred_at: datetime) -> int | None:
    """person.age as sent, else whole years from the birth date at the contact's UTC date."""
    age = person.get("age")
    if isinstance(age, int) and not isinstance(age, bool):
        return age
    born = person.get("birth_date")
    if born is None:
        return None
    try:
        return age_on(as_date(born), as_utc(occurred_at).date())
    except (TypeError, ValueError):
        return None


def _view(person_id: str, display: str | None, payload: Mapping[str, Any] | None,
          occurred_at: datetime, setting: str, contact_type: str | None) -> ContactView:
    person = (payload or {}).get("person") or {}
    sex = person.get("sex")
    return ContactView(person_id=person_id, display=display, age=_age(person, occurred_at),
                       sex=str(sex) if sex else None, occurred_at=occurred_at, setting=setting,
                       contact_type=contact_type)


def contact_of(event: Event) -> ContactView:
    return _view(event.person_id, event.person_display, event.payload, event.occurred_at,
                 event.setting, event.contact_type)


def contacts_for(session: Session, event_ids: Iterable[str]) -> dict[str, ContactView]:
    """Event id -> its ContactView, for these events (one query)."""
    ids = sorted(set(event_ids))
    if not ids:
        return {}
    rows = session.execute(select(
        Event.id, Event.person_id, Event.person_display, Event.payload, Event.occurred_at,
        Event.setting, Event.contact_type).where(Event.id.in_(ids)))
    return {r.id: _view(r.person_id, r.person_display, r.payload, r.occurred_at, r.setting,
                        r.contact_type) for r in rows}


def latest_outcomes(session: Session, prompt_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Prompt id -> its latest outcome: what, to which service, who recorded it, when. Who is
    the member of staff named with the outcome, else the signed-in person or key that recorded
    it. The note is not included: it stays with the outcome history."""
    ids = sorted(set(prompt_ids))
    if not ids:
        return {}
    newest = (select(func.max(PromptOutcome.id)).where(PromptOutcome.prompt_id.in_(ids))
              .group_by(PromptOutcome.prompt_id))
    rows = list(session.scalars(select(PromptOutcome).where(PromptOutcome.id.in_(newest))))
    names = _recorder_names(session, {r.recorded_by for r in rows
                                      if r.recorded_by and not r.staff_id})
    return {r.prompt_id: {"outcome": r.outcome, "service_id": r.service_id,
                          "staff_id": r.staff_id,
                          "recorded_by": r.staff_id or names.get(r.recorded_by or ""),
                          "recorded_at": iso(r.recorded_at)} for r in rows}


def _recorder_names(session: Session, identities: set[str]) -> dict[str, str]:
    users = {i.removeprefix(USER_PREFIX): i for i in identities if i.startswith(USER_PREFIX)}
    keys = identities - set(users.values())
    names: dict[str, str] = {}
    if users:
        for user_id, name in session.execute(select(User.id, User.name)
                                             .where(User.id.in_(users))):
            names[users[user_id]] = name
    if keys:
        names.update((key_id, name) for key_id, name in session.execute(
            select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(keys))))
    return names
