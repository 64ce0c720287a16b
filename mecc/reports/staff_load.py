"""Staff load, the prompt budget: how many prompts does one member of staff get in a day?

Counted over pushed prompts (shown, not deferred) whose contact falls in the window, per
member of staff per UTC day on which they got at least one (a *staff-day*): the median, 90th
percentile and maximum, overall and per team. A staff-day counts whole under its member of
staff's team that day (the first by name, should their contacts name two), so a team's figures
are its people's real days. Prompts of contacts without a staff id are counted apart
(`without_staff`). The database counts each staff-day (one GROUP BY); the percentiles are
taken here, interpolating between the nearest ranks as PostgreSQL's percentile_cont does.
Computing them in PostgreSQL as well was measured no faster (bench/reports.py): the grouping
is the cost, not the percentiles.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.platform.runtime import Runtime
from mecc.prompts.service import scope_organisation
from mecc.reports.window import Window, day_expression, resolve_window
from mecc.store.models import Prompt

StaffDay = tuple[str | None, str | None, str, int]  # staff id, team, day, pushed prompts


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks; None if empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return round(value, 2)


def distribution(values: list[int]) -> dict[str, float | int | None]:
    """median, p90 and max of per-staff-day counts."""
    return {"median": percentile(values, 0.5), "p90": percentile(values, 0.9),
            "max": max(values) if values else None}


def _conditions(window: Window, organisation: str | None) -> list[ColumnElement[bool]]:
    conditions = [Prompt.contact_at >= window.start, Prompt.contact_at < window.end,
                  Prompt.status != "deferred"]
    if organisation is not None:
        conditions.append(Prompt.organisation == organisation)
    return conditions


def _staff_days(day: ColumnElement[Any], conditions: list[ColumnElement[bool]]) -> Any:
    # min(team): the staff-day's team (NULLs ignored), one aggregation for both figures.
    return (select(Prompt.staff_id.label("staff"), func.min(Prompt.team).label("team"),
                   day.label("day"), func.count().label("n"))
            .where(*conditions).group_by(Prompt.staff_id, day))


def staff_day_rows(session: Session, window: Window, organisation: str | None
                   ) -> list[StaffDay]:
    """One row per staff-day (and one per day for contacts without a staff id)."""
    day = day_expression(session.get_bind().dialect.name, Prompt.contact_at)
    return [(s, t, str(d), int(n)) for s, t, d, n in session.execute(
        _staff_days(day, _conditions(window, organisation)))]


def _team_order(team: dict[str, Any]) -> tuple[float, int, bool, str]:
    return (-(team["p90"] or 0), -team["pushed"], team["team"] is None, team["team"] or "")


def summarise(rows: list[StaffDay]) -> dict[str, Any]:
    per_team: dict[str | None, list[tuple[str, int]]] = defaultdict(list)
    without_staff = 0
    for staff, team, _, pushed in rows:
        if staff is None:
            without_staff += pushed
        else:
            per_team[team].append((staff, pushed))
    teams = []
    for team, days in per_team.items():
        values = [n for _, n in days]
        teams.append({"team": team, "staff": len({s for s, _ in days}),
                      "staff_days": len(values), "pushed": sum(values),
                      **distribution(values)})
    teams.sort(key=_team_order)
    everyone = [day for days in per_team.values() for day in days]
    values = [n for _, n in everyone]
    return {
        "staff": len({s for s, _ in everyone}), "staff_days": len(values),
        "pushed": sum(values) + without_staff, "without_staff": without_staff,
        "per_staff_day": distribution(values), "teams": teams,
    }


def staff_load_report(runtime: Runtime, principal: Principal, *, start: datetime | None,
                      end: datetime | None, organisation: str | None) -> dict[str, Any]:
    visible = scope_organisation(principal, organisation)
    visible = visible.upper() if visible else None
    window = resolve_window(start, end)
    with runtime.db.session() as session:
        rows = staff_day_rows(session, window, visible)
    return {**window.as_dict(), "organisation": visible, **summarise(rows),
            "next_cursor": None}
