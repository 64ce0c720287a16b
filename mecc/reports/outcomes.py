"""Outcome reports: what the prompts achieved, grouped by topic, rule, setting, organisation or day.

Counted on the database (one GROUP BY query) over prompts whose *contact* (`contact_at`, the
event's occurred_at) falls in the half-open window [from, to). Definitions, per group:

- ``created``: every stored prompt, shown or deferred;
- ``deferred``: over the per-contact cap, stored but never pushed (status still ``deferred``);
- ``pushed``: shown to staff, i.e. every prompt that is not ``deferred`` (a deferred prompt that
  later got an outcome through the API was evidently seen, so it counts as pushed);
- one count per outcome: the prompt's *latest* outcome (its status); a prompt counts once;
- ``no_outcome``: pushed prompts still ``new``; ``with_outcome`` = pushed - no_outcome;
- rates are shares of ``pushed`` (null when nothing was pushed): ``outcome`` (with an outcome),
  ``conversation``, ``referral``, ``decline``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, String, case, func, select
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.clinical.domain import OUTCOMES
from mecc.intake.read import iso
from mecc.platform.errors import ValidationFailed
from mecc.platform.runtime import Runtime
from mecc.prompts.service import scope_organisation
from mecc.store.models import Prompt

GROUP_BY = ("topic", "rule", "setting", "organisation", "day")
DEFAULT_DAYS = 30
_COLUMNS: Mapping[str, Any] = {
    "topic": Prompt.topic, "rule": Prompt.rule_key, "setting": Prompt.setting,
    "organisation": Prompt.organisation,
}
_RATES = {"conversation": "conversation_had", "referral": "referred", "decline": "declined"}


@dataclass(frozen=True)
class Window:
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC


def default_window(now: datetime | None = None) -> Window:
    """The last 30 UTC days including today: whole days, so a per-day chart has no stubs."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    end = datetime.combine(today + timedelta(days=1), time(), UTC)
    return Window(end - timedelta(days=DEFAULT_DAYS), end)


def day_expression(dialect: str, column: Any) -> ColumnElement[str]:
    """The UTC calendar day of a timestamp column as 'YYYY-MM-DD', on SQLite and PostgreSQL."""
    if dialect == "postgresql":
        # timestamptz: convert to UTC explicitly, whatever the session's TimeZone is.
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD", type_=String)
    # SQLite keeps UTCDateTime as naive UTC text ('YYYY-MM-DD HH:MM:SS.ffffff').
    return func.strftime("%Y-%m-%d", column, type_=String)


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    # SUM(CASE ...) rather than COUNT(...) FILTER: the same SQL on every backend.
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0, type_=Integer)


def _counts_query(group: ColumnElement[Any], window: Window, organisation: str | None) -> Any:
    columns = [
        group.label("key"),
        func.count().label("created"),
        _count_where(Prompt.status == "deferred").label("deferred"),
        _count_where(Prompt.status == "new").label("no_outcome"),
        *(_count_where(Prompt.status == o).label(o) for o in OUTCOMES),
    ]
    query = select(*columns).where(Prompt.contact_at >= window.start,
                                   Prompt.contact_at < window.end)
    if organisation is not None:
        query = query.where(Prompt.organisation == organisation)
    return query.group_by(group)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _shape(key: str | None, counts: Mapping[str, int]) -> dict[str, Any]:
    created, deferred, no_outcome = counts["created"], counts["deferred"], counts["no_outcome"]
    pushed = created - deferred
    outcomes = {o: int(counts[o]) for o in OUTCOMES}
    with_outcome = pushed - no_outcome
    rates = {"outcome": _rate(with_outcome, pushed),
             **{name: _rate(outcomes[o], pushed) for name, o in _RATES.items()}}
    row: dict[str, Any] = {} if key is None else {"key": key}
    row.update(created=created, pushed=pushed, deferred=deferred, outcomes=outcomes,
               with_outcome=with_outcome, no_outcome=no_outcome, rates=rates)
    return row


def _empty_counts() -> dict[str, int]:
    return {"created": 0, "deferred": 0, "no_outcome": 0, **{o: 0 for o in OUTCOMES}}


def outcome_counts(session: Session, group_by: str, window: Window,
                   organisation: str | None) -> dict[str, dict[str, int]]:
    """Raw counts per group key (database work only; no rates)."""
    dialect = session.get_bind().dialect.name
    group = (day_expression(dialect, Prompt.contact_at) if group_by == "day"
             else _COLUMNS[group_by])
    rows = session.execute(_counts_query(group, window, organisation)).mappings()
    return {str(r["key"]): {k: int(v) for k, v in r.items() if k != "key"} for r in rows}


def _days(window: Window) -> list[str]:
    first: date = window.start.date()
    last: date = (window.end - timedelta(microseconds=1)).date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def outcomes_report(runtime: Runtime, principal: Principal, *, group_by: str,
                    start: datetime | None, end: datetime | None,
                    organisation: str | None) -> dict[str, Any]:
    """The outcome report a key may see (an organisation-bound key: its own organisation only)."""
    visible = scope_organisation(principal, organisation)
    visible = visible.upper() if visible else None
    fallback = default_window()
    if start is None and end is not None:
        start = end - timedelta(days=DEFAULT_DAYS)
    window = Window(start or fallback.start, end or fallback.end)
    if window.start >= window.end:
        raise ValidationFailed("'from' must be before 'to'.", errors={
            "from": [f"Must be before 'to' ({iso(window.end)})."]})
    with runtime.db.session() as session:
        counts = outcome_counts(session, group_by, window, visible)
    if group_by == "day":
        # Every day of the window, empty ones too, so a chart's axis is the calendar.
        keys = _days(window)
        counts = {k: counts.get(k, _empty_counts()) for k in keys}
        order = keys
    else:
        order = sorted(counts, key=lambda k: (-counts[k]["created"], k))
    totals = _empty_counts()
    for row in counts.values():
        for name, value in row.items():
            totals[name] += value
    return {
        "from": iso(window.start), "to": iso(window.end), "group_by": group_by,
        "organisation": visible,
        "items": [_shape(k, counts[k]) for k in order],
        "totals": _shape(None, totals),
        "next_cursor": None,
    }
