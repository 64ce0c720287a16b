"""Staff load, the prompt budget: how many prompts does one member of staff get in a day?

Counted over pushed prompts (shown, not deferred) whose contact falls in the window, per
member of staff per UTC day on which they got at least one: the median, 90th percentile and
maximum of those staff-days, overall and per team. Prompts for contacts without a staff id
are counted apart (`without_staff`). Percentiles interpolate between the nearest ranks, as
PostgreSQL's percentile_cont does: on PostgreSQL the database computes them, on SQLite this
module does (tests hold both to the same answers).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Date, String, cast, distinct, func, literal, select, union_all
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.platform.runtime import Runtime
from mecc.prompts.service import scope_organisation
from mecc.reports.window import Window, day_expression, resolve_window
from mecc.store.models import Prompt


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


def staff_day_rows(session: Session, window: Window,
                   organisation: str | None) -> list[tuple[str | None, str | None, str, int]]:
    """(staff id, team, day, pushed prompts), one row per combination in the window."""
    day = day_expression(session.get_bind().dialect.name, Prompt.contact_at)
    query = (select(Prompt.staff_id, Prompt.team, day.label("day"), func.count())
             .where(Prompt.contact_at >= window.start, Prompt.contact_at < window.end,
                    Prompt.status != "deferred")
             .group_by(Prompt.staff_id, Prompt.team, day))
    if organisation is not None:
        query = query.where(Prompt.organisation == organisation)
    return [(s, t, str(d), int(n)) for s, t, d, n in session.execute(query)]


def summarise(rows: list[tuple[str | None, str | None, str, int]]) -> dict[str, Any]:
    per_staff_day: dict[tuple[str, str], int] = defaultdict(int)
    per_team: dict[str | None, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    without_staff = 0
    for staff, team, day, pushed in rows:
        if staff is None:
            without_staff += pushed
            continue
        per_staff_day[(staff, day)] += pushed
        per_team[team][(staff, day)] += pushed
    teams = []
    for team, days in per_team.items():
        values = list(days.values())
        teams.append({"team": team, "staff": len({s for s, _ in days}),
                      "staff_days": len(values), "pushed": sum(values),
                      **distribution(values)})
    teams.sort(key=lambda t: (-(t["p90"] or 0), -t["pushed"], t["team"] is None,
                              t["team"] or ""))
    values = list(per_staff_day.values())
    return {
        "staff": len({s for s, _ in per_staff_day}), "staff_days": len(values),
        "pushed": sum(values) + without_staff, "without_staff": without_staff,
        "per_staff_day": distribution(values), "teams": teams,
    }


def _summary_in_postgres(session: Session, window: Window,
                         organisation: str | None) -> dict[str, Any]:
    """The same figures as `summarise`, computed by PostgreSQL (percentile_cont): a month of
    a large organisation is a few hundred thousand staff-days, too many to ship to Python."""
    conditions = [Prompt.contact_at >= window.start, Prompt.contact_at < window.end,
                  Prompt.status != "deferred"]
    if organisation is not None:
        conditions.append(Prompt.organisation == organisation)
    day = cast(func.timezone("UTC", Prompt.contact_at), Date)
    per = (select(Prompt.staff_id.label("staff"), Prompt.team.label("team"),
                  day.label("day"), func.count().label("n"))
           .where(*conditions, Prompt.staff_id.is_not(None))
           .group_by(Prompt.staff_id, Prompt.team, day)
           .cte("per").prefix_with("MATERIALIZED"))
    staff_day = (select(per.c.staff, func.sum(per.c.n).label("n"))
                 .group_by(per.c.staff, per.c.day).subquery())

    def figures(n: Any, staff: Any) -> list[Any]:
        return [func.percentile_cont(0.5).within_group(n),
                func.percentile_cont(0.9).within_group(n), func.max(n), func.count(),
                func.sum(n), func.count(distinct(staff))]

    overall = select(literal(True).label("overall"), literal(None, String).label("team"),
                     *figures(staff_day.c.n, staff_day.c.staff))
    teams = (select(literal(False), per.c.team, *figures(per.c.n, per.c.staff))
             .group_by(per.c.team))
    rows = session.execute(union_all(overall, teams)).all()
    without_staff = session.scalar(select(func.count()).select_from(Prompt).where(
        *conditions, Prompt.staff_id.is_(None))) or 0

    def load(median: Any, p90: Any, most: Any) -> dict[str, float | int | None]:
        return {"median": None if median is None else round(float(median), 2),
                "p90": None if p90 is None else round(float(p90), 2),
                "max": None if most is None else int(most)}

    summary: dict[str, Any] = {"teams": []}
    for is_overall, team, median, p90, most, days, pushed, staff in rows:
        if is_overall:
            summary.update(staff=int(staff), staff_days=int(days),
                           pushed=int(pushed or 0) + int(without_staff),
                           without_staff=int(without_staff),
                           per_staff_day=load(median, p90, most))
        else:
            summary["teams"].append({"team": team, "staff": int(staff), "staff_days": int(days),
                                     "pushed": int(pushed), **load(median, p90, most)})
    summary["teams"].sort(key=lambda t: (-(t["p90"] or 0), -t["pushed"], t["team"] is None,
                                         t["team"] or ""))
    return summary


def staff_load_report(runtime: Runtime, principal: Principal, *, start: datetime | None,
                      end: datetime | None, organisation: str | None) -> dict[str, Any]:
    visible = scope_organisation(principal, organisation)
    visible = visible.upper() if visible else None
    window = resolve_window(start, end)
    with runtime.db.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            summary = _summary_in_postgres(session, window, visible)
        else:
            summary = summarise(staff_day_rows(session, window, visible))
    return {**window.as_dict(), "organisation": visible, **summary, "next_cursor": None}
