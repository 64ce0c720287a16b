"""The time window every report covers: contacts (or referrals) in [from, to), in UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, String, case, func

from mecc.intake.read import iso
from mecc.platform.errors import ValidationFailed

DEFAULT_DAYS = 30
# A per-day report lists every day of its window: ten years bounds that list (and the query).
MAX_DAYS = 3660


@dataclass(frozen=True)
class Window:
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC

    @property
    def days(self) -> list[str]:
        """Every UTC calendar day the window touches, as YYYY-MM-DD."""
        first: date = self.start.date()
        last: date = (self.end - timedelta(microseconds=1)).date()
        return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]

    def as_dict(self) -> dict[str, str | None]:
        return {"from": iso(self.start), "to": iso(self.end)}


def default_window(now: datetime | None = None) -> Window:
    """The last 30 UTC days including today: whole days, so a per-day chart has no stubs."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    end = datetime.combine(today + timedelta(days=1), time(), UTC)
    return Window(end - timedelta(days=DEFAULT_DAYS), end)


def resolve_window(start: datetime | None, end: datetime | None) -> Window:
    """The asked-for window, defaults filled in (30 days ending tomorrow 00:00 UTC, or ending
    at `to`); a window that ends before it starts is a 422 naming `from`."""
    fallback = default_window()
    if start is None and end is not None:
        try:
            start = end - timedelta(days=DEFAULT_DAYS)
        except OverflowError:  # `to` in the first month of year 1
            raise ValidationFailed("'to' is too early.", errors={
                "to": ["Must be after 0001-01-31."]}) from None
    window = Window(start or fallback.start, end or fallback.end)
    if window.start >= window.end:
        raise ValidationFailed("'from' must be before 'to'.", errors={
            "from": [f"Must be before 'to' ({iso(window.end)})."]})
    if window.end - window.start > timedelta(days=MAX_DAYS):  # and no more than MAX_DAYS
        raise ValidationFailed(f"A report covers at most {MAX_DAYS} days.", errors={
            "from": [f"Must be at most {MAX_DAYS} days before 'to'."]})
    return window


def day_expression(dialect: str, column: Any) -> ColumnElement[str]:
    """The UTC calendar day of a timestamp column as 'YYYY-MM-DD', on SQLite and PostgreSQL."""
    if dialect == "postgresql":
        # timestamptz: convert to UTC explicitly, whatever the session's TimeZone is.
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD", type_=String)
    # SQLite keeps UTCDateTime as naive UTC text ('YYYY-MM-DD HH:MM:SS.ffffff').
    return func.strftime("%Y-%m-%d", column, type_=String)


def count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """SUM(CASE ...) rather than COUNT(...) FILTER: the same SQL on every backend."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0, type_=Integer)


def rate(part: int | None, whole: int | None) -> float | None:
    """part / whole to 4 places; null when either is hidden or nothing is in the whole."""
    if part is None or not whole:
        return None
    return round(part / whole, 4)
