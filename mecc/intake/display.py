"""The person's display label (`person.display`): held for direct care only, then erased.

The label lives in one place, `events.person_display`; the event's payload never holds a copy,
and prompts, push messages and webhook bodies read it from there when they are built. So
erasing it is one statement, and after it no stored row anywhere still says who the person was.
It is never logged (log calls pass ids; mecc.platform.observability redacts a `display` field
whatever a caller passes), and reports, back-tests and exports read prompt columns and the
payload, which do not carry it.

`MECC_DISPLAY_RETENTION_HOURS` after the contact (`occurred_at`) the beat task
(mecc.tasks.erase_display_labels, every quarter of the window and at least every 5 minutes:
mecc.platform.celery_app.display_sweep_seconds) sets it to null. A contact already older than
that when it arrives is stored without its label.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import update

from mecc.platform.db import utcnow
from mecc.platform.runtime import Runtime
from mecc.platform.settings import Settings
from mecc.store.models import Event

log = logging.getLogger(__name__)


def retention(settings: Settings) -> timedelta:
    return timedelta(hours=settings.display_retention_hours)


def label_to_keep(settings: Settings, display: str | None, occurred_at: datetime,
                  now: datetime | None = None) -> str | None:
    """The label to store for a contact: none when the contact is past the window already."""
    if not display:
        return None
    if occurred_at <= (now or utcnow()) - retention(settings):
        return None
    return display


def erase_expired(runtime: Runtime, now: datetime | None = None) -> int:
    """Null every label whose contact is older than the retention window; how many."""
    cutoff = (now or utcnow()) - retention(runtime.settings)
    with runtime.db.session() as session:
        result = session.execute(
            update(Event).where(Event.person_display.is_not(None), Event.occurred_at <= cutoff)
            .values(person_display=None).execution_options(synchronize_session=False))
        session.commit()
    erased = int(getattr(result, "rowcount", 0) or 0)
    if erased:
        log.info("display labels erased", extra={"count": erased})
    return erased
