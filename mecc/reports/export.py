"""Every report as CSV (`Accept: text/csv`): the same numbers as the JSON, one row per group
and a last row for all of them. A hidden count reads `<5` (with the threshold in force); a
rate or mean that rests on a hidden count, or on nothing, is an empty cell."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from mecc.clinical.domain import OUTCOMES
from mecc.reports.referrals import SCORES, STATUSES
from mecc.store.referrals import PERSONAL_OUTCOME_ITEMS

Column = tuple[str, Callable[[dict[str, Any]], Any], bool]  # header, value, is a count
ALL = "All"


def _count(path: Sequence[str]) -> Callable[[dict[str, Any]], Any]:
    def get(row: dict[str, Any]) -> Any:
        value: Any = row
        for part in path:
            value = value[part]
        return value
    return get


def _columns_outcomes(group_by: str) -> list[Column]:
    return [
        (group_by, lambda r: r.get("key", ALL), False),
        ("created", _count(["created"]), True), ("pushed", _count(["pushed"]), True),
        ("deferred", _count(["deferred"]), True),
        *((o, _count(["outcomes", o]), True) for o in OUTCOMES),
        ("with_outcome", _count(["with_outcome"]), True),
        ("no_outcome", _count(["no_outcome"]), True),
        *((f"{name}_rate", _count(["rates", name]), False)
          for name in ("outcome", "conversation", "referral", "decline")),
        ("suppressed", lambda r: "yes" if r.get("suppressed") else "no", False),
    ]


def _columns_fatigue() -> list[Column]:
    return [("rule", _count(["rule"]), False), ("title", _count(["title"]), False),
            ("topic", _count(["topic"]), False),
            *((name, _count([name]), True) for name in (
                "pushed", "with_outcome", "declined", "not_appropriate", "not_now",
                "no_outcome")),
            ("override_rate", _count(["override_rate"]), False),
            ("flagged", lambda r: "yes" if r["flagged"] else "no", False)]


def _columns_referrals(group_by: str) -> list[Column]:
    columns: list[Column] = [
        (group_by, lambda r: r.get("key", ALL), False),
        ("label", lambda r: r.get("label", ALL), False),
        ("referrals", _count(["referrals"]), True),
        *((f"status_{s}", _count(["status", s]), True) for s in STATUSES),
        ("accepted", _count(["accepted"]), True), ("attended", _count(["attended"]), True),
        ("did_not_attend", _count(["did_not_attend"]), True),
        ("acceptance_rate", _count(["rates", "acceptance"]), False),
        ("attendance_rate", _count(["rates", "attendance"]), False),
    ]
    for item in PERSONAL_OUTCOME_ITEMS:
        columns.append((f"{item}_responses", _count(["personal_outcomes", item, "responses"]),
                        True))
        columns.append((f"{item}_mean", _count(["personal_outcomes", item, "mean"]), False))
        columns.extend((f"{item}_{k}", _count(["personal_outcomes", item, "distribution",
                                               str(k)]), True) for k in SCORES)
    columns.append(("suppressed", lambda r: "yes" if r.get("suppressed") else "no", False))
    return columns


def _write(columns: list[Column], rows: list[dict[str, Any]], min_cell: int | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header for header, _, _ in columns])
    for row in rows:
        cells = []
        for _, value, is_count in columns:
            v = value(row)
            if v is None:
                cells.append(f"<{min_cell}" if is_count and min_cell else "")
            else:
                cells.append(v)
        writer.writerow(cells)
    return out.getvalue()


def _min_cell(report: dict[str, Any]) -> int | None:
    note = report.get("suppression") or {}
    return note.get("min_cell") if note.get("applied") else None


def outcomes_csv(report: dict[str, Any]) -> str:
    return _write(_columns_outcomes(report["group_by"]), [*report["items"], report["totals"]],
                  _min_cell(report))


def fatigue_csv(report: dict[str, Any]) -> str:
    return _write(_columns_fatigue(), report["items"], None)


def staff_load_csv(report: dict[str, Any]) -> str:
    overall = {"team": ALL, "staff": report["staff"], "staff_days": report["staff_days"],
               "pushed": report["pushed"] - report["without_staff"],
               **report["per_staff_day"]}
    teams = [{**t, "team": t["team"] if t["team"] is not None else ""}
             for t in report["teams"]]
    columns: list[Column] = [(name, _count([name]), False) for name in (
        "team", "staff", "staff_days", "pushed", "median", "p90", "max")]
    return _write(columns, [overall, *teams], None)


def referrals_csv(report: dict[str, Any]) -> str:
    return _write(_columns_referrals(report["group_by"]), [*report["items"], report["totals"]],
                  _min_cell(report))


def filename(kind: str, report: dict[str, Any]) -> str:
    """mecc-<kind>[-by-<grouping>]-<first day>-to-<last day>.csv (the window's UTC days)."""
    start = str(report["from"])[:10]
    end = (datetime.fromisoformat(str(report["to"]).replace("Z", "+00:00"))
           - timedelta(microseconds=1)).date().isoformat()
    grouping = f"-by-{report['group_by']}" if report.get("group_by") else ""
    return f"mecc-{kind}{grouping}-{start}-to-{end}.csv"
