"""Outcome reports: what the prompts achieved, and for whom.

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

Groups: topic, rule, setting, organisation, day (UTC), team, staff, and the person as recorded
at the contact (ethnicity group, age band, sex, postcode district, deprivation decile). In the
person groupings small numbers are suppressed (mecc.reports.suppression): a hidden count is
null, its group says ``"suppressed": true``, and a rate resting on a hidden count is null.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.clinical.domain import OUTCOMES
from mecc.platform.runtime import Runtime
from mecc.prompts.service import scope_organisation
from mecc.reports import deprivation
from mecc.reports.attributes import PERSON_GROUPINGS, UNKNOWN, group_order
from mecc.reports.suppression import TOTAL, Hidden, Layout, nothing_hidden, suppress
from mecc.reports.window import (
    DEFAULT_DAYS,
    Window,
    day_expression,
    default_window,
    rate,
    resolve_window,
)
from mecc.store.models import Prompt

__all__ = ["DEFAULT_DAYS", "GROUP_BY", "Window", "default_window", "outcome_counts",
           "outcomes_report"]

GROUP_BY = ("topic", "rule", "setting", "organisation", "day", "team", "staff",
            *PERSON_GROUPINGS)
_COLUMNS: Mapping[str, Any] = {
    "topic": Prompt.topic, "rule": Prompt.rule_key, "setting": Prompt.setting,
    "organisation": Prompt.organisation, "team": Prompt.team, "staff": Prompt.staff_id,
    "ethnicity_group": Prompt.ethnicity_group, "age_band": Prompt.age_band,
    "sex": Prompt.sex, "postcode_district": Prompt.postcode_district,
    # Counted per district, then summed per decile through the configured lookup.
    "deprivation_decile": Prompt.postcode_district,
}
_RATES = {"conversation": "conversation_had", "referral": "referred", "decline": "declined"}
COUNTS = ("created", "deferred", "pushed", "no_outcome", "with_outcome", *OUTCOMES)
# The identities anyone can check in a row: what suppression must not let be solved.
LAYOUT = Layout(columns=COUNTS, equations=(
    ("created", ("pushed", "deferred")),
    ("pushed", ("with_outcome", "no_outcome")),
    ("with_outcome", OUTCOMES),
), precious=("pushed", "created", "with_outcome"))


def _group_column(group_by: str, dialect: str) -> ColumnElement[Any]:
    if group_by == "day":
        return day_expression(dialect, Prompt.contact_at)
    column = _COLUMNS[group_by]
    if group_by in PERSON_GROUPINGS:
        return func.coalesce(column, UNKNOWN)
    return column


def _counts_query(group: ColumnElement[Any], window: Window, organisation: str | None) -> Any:
    # Counted per (group, status) and pivoted in Python: one COUNT(*) per row is much cheaper
    # than a SUM(CASE ...) per outcome per row (bench/reports.py), and the groups are few.
    query = (select(group.label("key"), Prompt.status, func.count().label("n"))
             .where(Prompt.contact_at >= window.start, Prompt.contact_at < window.end))
    if organisation is not None:
        query = query.where(Prompt.organisation == organisation)
    return query.group_by(group, Prompt.status)


def _add_status(counts: dict[str, int], status: str, n: int) -> None:
    counts["created"] += n
    if status == "deferred":
        counts["deferred"] += n
    else:
        counts["pushed"] += n
        if status == "new":
            counts["no_outcome"] += n
        elif status in counts:
            counts[status] += n
            counts["with_outcome"] += n


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


def outcome_counts(session: Session, group_by: str, window: Window, organisation: str | None,
                   *, lookup: Mapping[str, int] | None = None) -> dict[str | None, dict[str, int]]:
    """Counts per group key (database work; no rates, no suppression). `lookup`: the
    district -> decile table, for group_by=deprivation_decile."""
    dialect = session.get_bind().dialect.name
    rows = session.execute(_counts_query(_group_column(group_by, dialect), window,
                                         organisation))
    out: dict[str | None, dict[str, int]] = {}
    for key, status, n in rows:
        if group_by == "deprivation_decile":
            key = deprivation.decile_of(key, lookup or {})
        _add_status(out.setdefault(key, empty_counts()), str(status), int(n))
    return out


def shape_row(key: str | None, counts: Mapping[str, int], hidden: set[str], *,
              with_key: bool = True) -> dict[str, Any]:
    """A group's counts and rates, with the hidden ones null."""
    shown: dict[str, int | None] = {c: (None if c in hidden else counts[c]) for c in COUNTS}
    pushed = shown["pushed"]
    rates = {"outcome": rate(shown["with_outcome"], pushed),
             **{name: rate(shown[o], pushed) for name, o in _RATES.items()}}
    row: dict[str, Any] = {"key": key} if with_key else {}
    row.update(created=shown["created"], pushed=pushed, deferred=shown["deferred"],
               outcomes={o: shown[o] for o in OUTCOMES}, with_outcome=shown["with_outcome"],
               no_outcome=shown["no_outcome"], rates=rates, suppressed=bool(hidden))
    return row


def order_keys(group_by: str, counts: Mapping[str | None, Mapping[str, int]],
               hidden: Hidden, keys: list[str | None], *, size: str = "created"
               ) -> list[str | None]:
    """Ordinal groupings in their own order; others largest first (by the `size` column),
    then the groups whose size is hidden, by name (their place among the others would bound
    the hidden number)."""
    natural = group_order(group_by, [k for k in keys if k is not None])
    if natural is not None:
        return [*natural, *(k for k in keys if k is None)]
    position = {k: i for i, k in enumerate(keys)}
    return sorted(keys, key=lambda k: (
        size in hidden.rows[position[k]],
        0 if size in hidden.rows[position[k]] else -counts[k][size],
        (k is None, k or "")))


def outcomes_report(runtime: Runtime, principal: Principal, *, group_by: str,
                    start: datetime | None, end: datetime | None,
                    organisation: str | None) -> dict[str, Any]:
    """The outcome report a key may see (an organisation-bound key: its own organisation only)."""
    visible = scope_organisation(principal, organisation)
    visible = visible.upper() if visible else None
    window = resolve_window(start, end)
    lookup = (deprivation.load_lookup(runtime.settings.config_dir)
              if group_by == "deprivation_decile" else None)
    with runtime.db.session() as session:
        counts = outcome_counts(session, group_by, window, visible, lookup=lookup)
    if group_by == "day":
        # Every day of the window, empty ones too, so a chart's axis is the calendar.
        counts = {k: counts.get(k, empty_counts()) for k in window.days}
    keys = list(counts)
    totals = empty_counts()
    for row in counts.values():
        for name, value in row.items():
            totals[name] += value
    min_cell = runtime.settings.report_min_cell
    applies = group_by in PERSON_GROUPINGS and min_cell > 0
    hidden = (suppress([counts[k] for k in keys], totals, LAYOUT, min_cell) if applies
              else nothing_hidden(len(keys)))
    if group_by != "day":
        order = order_keys(group_by, counts, hidden, keys)
    else:
        order = keys
    position = {k: i for i, k in enumerate(keys)}
    return {
        **window.as_dict(), "group_by": group_by, "organisation": visible,
        "suppression": suppression_note(applies, min_cell, hidden),
        "items": [shape_row(k, counts[k], hidden.rows[position[k]]) for k in order],
        "totals": shape_row(None, totals, hidden.row(TOTAL), with_key=False),
        "next_cursor": None,
    }


def suppression_note(applies: bool, min_cell: int, hidden: Hidden) -> dict[str, Any]:
    return {"applied": applies, "min_cell": min_cell if applies else None,
            "suppressed_groups": sum(1 for row in hidden.rows if row)}
