"""Referral report: where referrals went, whether people attended, and what they say changed.

Over referrals opened in the window, per group (service, topic, organisation, team, or the
person as recorded at the contact): ``referrals``; their current ``status`` counts;
``accepted`` (ever taken on: accepted, or an appointment offered) and the attendance recorded
(``attended``, ``did_not_attend``); rates ``acceptance`` (accepted / referrals) and
``attendance`` (attended / (attended + did_not_attend)); and for each of the six personal
outcomes, from each referral's latest record: ``responses``, ``mean`` and the
``distribution`` of scores 1-5.

The personal outcomes are people's own words about their health, so small-number rules apply
in every grouping: counts from 1 to min_cell - 1 are hidden (mecc.reports.suppression), a
distribution is shown whole or not at all, and a rate or mean resting on a hidden count is
null. A mean is shown beside its response count; the table's equations include that weighted
sum, so a hidden distribution cannot be solved from it either.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, func, select
from sqlalchemy.orm import Session

from mecc.admin.keys import Principal
from mecc.platform.runtime import Runtime
from mecc.prompts.service import scope_organisation
from mecc.reports import deprivation
from mecc.reports.attributes import PERSON_GROUPINGS, UNKNOWN
from mecc.reports.outcomes import order_keys, suppression_note
from mecc.reports.suppression import TOTAL, Layout, nothing_hidden, suppress
from mecc.reports.window import Window, count_where, rate, resolve_window
from mecc.store.models import Prompt
from mecc.store.referrals import PERSONAL_OUTCOME_ITEMS, PersonalOutcome, Referral

STATUSES = ("requested", "accepted", "declined", "attended", "did_not_attend", "closed")
GROUP_BY = ("service", "topic", "organisation", "team", *PERSON_GROUPINGS)
SCORES = (1, 2, 3, 4, 5)
_GROUP_COLUMNS: Mapping[str, Any] = {
    "service": Referral.service_id, "topic": Referral.topic,
    "organisation": Referral.organisation, "team": Referral.team,
    "ethnicity_group": Prompt.ethnicity_group, "age_band": Prompt.age_band, "sex": Prompt.sex,
    "postcode_district": Prompt.postcode_district,
    "deprivation_decile": Prompt.postcode_district,
}


def _cell(item: str, suffix: str | int) -> str:
    return f"{item}:{suffix}"


COUNTS = ("referrals", *(f"status:{s}" for s in STATUSES), "accepted", "attended",
          "did_not_attend",
          *(_cell(i, x) for i in PERSONAL_OUTCOME_ITEMS for x in ("responses", "sum", *SCORES)))
LAYOUT = Layout(
    columns=COUNTS,
    equations=(("referrals", tuple(f"status:{s}" for s in STATUSES)),
               *((_cell(i, "responses"), tuple(_cell(i, k) for k in SCORES))
                 for i in PERSONAL_OUTCOME_ITEMS)),
    # sum = 1*n1 + ... + 5*n5: public whenever the mean and the response count are.
    weighted=tuple(((_cell(i, "sum"), 1), *((_cell(i, k), -k) for k in SCORES))
                   for i in PERSONAL_OUTCOME_ITEMS),
    blocks=tuple(tuple(_cell(i, k) for k in SCORES) for i in PERSONAL_OUTCOME_ITEMS),
    precious=("referrals", *(_cell(i, "responses") for i in PERSONAL_OUTCOME_ITEMS),
              *(_cell(i, "sum") for i in PERSONAL_OUTCOME_ITEMS)),
)


def _sum_of(column: ColumnElement[Any]) -> ColumnElement[int]:
    return func.coalesce(func.sum(column), 0, type_=Integer)


def referral_counts(session: Session, group_by: str, window: Window, organisation: str | None,
                    *, lookup: Mapping[str, int] | None = None
                    ) -> dict[str | None, dict[str, int]]:
    """Counts per group key, in one query (each referral's latest personal outcomes)."""
    latest = (select(PersonalOutcome.referral_id,
                     func.max(PersonalOutcome.id).label("outcome_id"))
              .group_by(PersonalOutcome.referral_id).subquery())
    group = _GROUP_COLUMNS[group_by]
    if group_by in PERSON_GROUPINGS:
        group = func.coalesce(group, UNKNOWN)
    columns: list[Any] = [
        group.label("key"), func.count().label("referrals"),
        *(count_where(Referral.status == s).label(f"status:{s}") for s in STATUSES),
        count_where(Referral.accepted_at.is_not(None)).label("accepted"),
        count_where(Referral.attendance == "attended").label("attended"),
        count_where(Referral.attendance == "did_not_attend").label("did_not_attend"),
    ]
    for item in PERSONAL_OUTCOME_ITEMS:
        score = getattr(PersonalOutcome, item)
        columns.append(count_where(score.is_not(None)).label(_cell(item, "responses")))
        columns.append(_sum_of(score).label(_cell(item, "sum")))
        columns.extend(count_where(score == k).label(_cell(item, k)) for k in SCORES)
    query = (select(*columns).select_from(Referral)
             .join(Prompt, Prompt.id == Referral.prompt_id)
             .outerjoin(latest, latest.c.referral_id == Referral.id)
             .outerjoin(PersonalOutcome, PersonalOutcome.id == latest.c.outcome_id)
             .where(Referral.opened_at >= window.start, Referral.opened_at < window.end)
             .group_by(group))
    if organisation is not None:
        query = query.where(Referral.organisation == organisation)
    out: dict[str | None, dict[str, int]] = {}
    for row in session.execute(query).mappings():
        key = row["key"]
        if group_by == "deprivation_decile":
            key = deprivation.decile_of(key, lookup or {})
        counts = {c: int(row[c]) for c in COUNTS}
        if key in out:
            counts = {c: out[key][c] + counts[c] for c in COUNTS}
        out[key] = counts
    return out


def _service_names(session: Session, keys: list[str | None]) -> dict[str, str]:
    return {sid: name for sid, name in session.execute(
        select(Referral.service_id, func.max(Referral.service_name))
        .where(Referral.service_id.in_([k for k in keys if k is not None]))
        .group_by(Referral.service_id))}


def shape_row(key: str | None, counts: Mapping[str, int], hidden: set[str], *,
              label: str | None = None, with_key: bool = True) -> dict[str, Any]:
    shown: dict[str, int | None] = {c: None if c in hidden else counts[c] for c in COUNTS}
    attended, missed = shown["attended"], shown["did_not_attend"]
    seen = None if attended is None or missed is None else attended + missed
    outcomes = {}
    for item in PERSONAL_OUTCOME_ITEMS:
        responses, total = shown[_cell(item, "responses")], shown[_cell(item, "sum")]
        outcomes[item] = {
            "responses": responses,
            "mean": round(total / responses, 2) if responses and total is not None else None,
            "distribution": {str(k): shown[_cell(item, k)] for k in SCORES},
        }
    row: dict[str, Any] = {"key": key, "label": label or key} if with_key else {}
    row.update(
        referrals=shown["referrals"], status={s: shown[f"status:{s}"] for s in STATUSES},
        accepted=shown["accepted"], attended=attended, did_not_attend=missed,
        rates={"acceptance": rate(shown["accepted"], shown["referrals"]),
               "attendance": rate(attended, seen)},
        personal_outcomes=outcomes, suppressed=bool(hidden))
    return row


def referrals_report(runtime: Runtime, principal: Principal, *, group_by: str,
                     start: datetime | None, end: datetime | None,
                     organisation: str | None) -> dict[str, Any]:
    visible = scope_organisation(principal, organisation)
    visible = visible.upper() if visible else None
    window = resolve_window(start, end)
    lookup = (deprivation.load_lookup(runtime.settings.config_dir)
              if group_by == "deprivation_decile" else None)
    with runtime.db.session() as session:
        counts = referral_counts(session, group_by, window, visible, lookup=lookup)
        names = _service_names(session, list(counts)) if group_by == "service" else {}
    keys = list(counts)
    totals = dict.fromkeys(COUNTS, 0)
    for row in counts.values():
        for name, value in row.items():
            totals[name] += value
    min_cell = runtime.settings.report_min_cell
    hidden = (suppress([counts[k] for k in keys], totals, LAYOUT, min_cell) if min_cell > 0
              else nothing_hidden(len(keys)))
    position = {k: i for i, k in enumerate(keys)}
    return {
        **window.as_dict(), "group_by": group_by, "organisation": visible,
        "suppression": suppression_note(min_cell > 0, min_cell, hidden),
        "items": [shape_row(k, counts[k], hidden.rows[position[k]],
                            label=names.get(k) if k is not None else None)
                  for k in order_keys(group_by, counts, hidden, keys, size="referrals")],
        "totals": shape_row(None, totals, hidden.row(TOTAL), with_key=False),
        "next_cursor": None,
    }
