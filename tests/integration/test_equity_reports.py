"""Who prompts reach: the person groupings of the outcome report, on SQLite and PostgreSQL.

Reconciliation (the groups add up to the total when nothing is hidden), small-number
suppression (every count from 1 to 4 hidden, and nothing hidden can be worked out from what is
shown), CSV equal to JSON, and the person as recorded at the contact.
"""

from __future__ import annotations

import csv
import io
import random
import shutil
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mecc.clinical.domain import OUTCOMES
from mecc.reports.outcomes import LAYOUT
from tests.support import ROOT
from tests.support.disclosure import derivable
from tests.support.factories import add_prompt, auth_header, make_event, post_event

REPORTS = "/api/v1/reports/outcomes"
PERSON = ("ethnicity_group", "age_band", "sex", "postcode_district", "deprivation_decile")
EVERY = ("topic", "rule", "setting", "organisation", "team", "staff", *PERSON)
START = datetime(2026, 11, 5, tzinfo=UTC)
WINDOW = "from=2026-11-05&to=2026-12-05"
DECILES = {"M14": 2, "M15": 1, "M20": 8, "LS6": 4}  # the test's own lookup; M1 is not in it


def use_settings(app: Any, **changes: Any) -> None:
    runtime = app.extensions["mecc"]
    runtime.settings = replace(runtime.settings, **changes)


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The real config, plus a deprivation lookup of the test's own."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "deprivation" / "postcode_district_deciles.csv").write_text(
        "postcode_district,decile\n" + "".join(f"{d},{n}\n" for d, n in DECILES.items()))
    return {**settings_overrides, "config_dir": str(config)}


def _key(prompt: dict[str, Any], group_by: str) -> str | None:
    if group_by == "deprivation_decile":
        district = prompt["postcode_district"]
        return str(DECILES[district]) if district in DECILES else "unknown"
    value = prompt[{"rule": "rule_key", "staff": "staff_id"}.get(group_by, group_by)]
    return value if value is not None or group_by in ("team", "staff") else "unknown"


def seed_prompts(app: Any, count: int, *, seed: int, pools: dict[str, list[Any]]
                 ) -> list[dict[str, Any]]:
    """`count` prompts with attributes drawn from `pools`, statuses from a skewed mix."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    statuses = ["new"] * 5 + ["deferred"] * 2 + ["conversation_had"] * 4 + ["referred"] * 2 + [
        "declined"] * 3 + ["not_now", "not_appropriate"]
    made = []
    with app.extensions["mecc"].db.session() as session:
        for n in range(count):
            row = {name: rng.choice(values) for name, values in pools.items()}
            row["status"] = rng.choice(statuses)
            at = START + timedelta(days=rng.randrange(30), minutes=n)
            add_prompt(session, at=at, person_id=f"p-{n}", **row)
            made.append(row)
        session.commit()
    return made


POOLS: dict[str, list[Any]] = {
    "topic": ["smoking", "alcohol", "healthy_weight"],
    "rule_key": ["smoking-vba", "alcohol-iba", "weight-nhs"],
    "setting": ["general_practice", "community_pharmacy"],
    "organisation": ["Y02345"],
    "team": ["blue", "red", None],
    "staff_id": ["st-1", "st-2", "st-3"],
    "ethnicity_group": ["white", "south_asian", "black_african", "chinese", None],
    "age_band": ["16-24", "25-34", "45-54", "75+", None],
    "sex": ["female", "male", "other", None],
    "postcode_district": ["M14", "M15", "M20", "LS6", "M1", None],
}


def _report(client: Any, key: str, query: str, **headers: str) -> Any:
    response = client.get(f"{REPORTS}?{WINDOW}&{query}", headers={**auth_header(key),
                                                                  **headers})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def _expected(prompts: list[dict[str, Any]], group_by: str) -> dict[str | None, Counter[str]]:
    groups: dict[str | None, Counter[str]] = defaultdict(Counter)
    for p in prompts:
        groups[_key(p, group_by)][p["status"]] += 1
    return groups


def _true_counts(statuses: Counter[str]) -> dict[str, int]:
    counts = {o: statuses[o] for o in OUTCOMES}
    counts.update(created=sum(statuses.values()), deferred=statuses["deferred"],
                  no_outcome=statuses["new"])
    counts["pushed"] = counts["created"] - counts["deferred"]
    counts["with_outcome"] = counts["pushed"] - counts["no_outcome"]
    return counts


def _shown(row: dict[str, Any]) -> dict[str, int | None]:
    return {"created": row["created"], "deferred": row["deferred"], "pushed": row["pushed"],
            "no_outcome": row["no_outcome"], "with_outcome": row["with_outcome"],
            **row["outcomes"]}


@pytest.mark.parametrize("group_by", EVERY)
def test_groups_add_up_to_the_total_when_nothing_is_hidden(app: Any, client: Any,
                                                           make_key: Any, group_by: str) -> None:
    use_settings(app, report_min_cell=0)
    prompts = seed_prompts(app, 160, seed=1, pools=POOLS)
    key = make_key(scopes=("reports:read",))
    report = _report(client, key, f"group_by={group_by}").json
    expected = _expected(prompts, group_by)
    assert {row["key"] for row in report["items"]} == set(expected)
    for row in report["items"]:
        assert _shown(row) == _true_counts(expected[row["key"]]), row["key"]
        assert row["suppressed"] is False
    for name in LAYOUT.columns:
        assert sum(_shown(row)[name] for row in report["items"]) == _shown(report["totals"])[
            name]
    topic = _report(client, key, "group_by=topic").json
    assert report["totals"] == topic["totals"]
    assert report["suppression"]["applied"] is False


def test_large_groups_hide_nothing_at_the_default_threshold(app: Any, client: Any,
                                                            make_key: Any) -> None:
    # Every group has at least 5 of everything: nothing to hide, and the sums reconcile.
    with app.extensions["mecc"].db.session() as session:
        for n, (sex, status) in enumerate((s, st) for s in ("female", "male") for st in (
                "new", "deferred", *OUTCOMES) for _ in range(5)):
            add_prompt(session, at=START + timedelta(hours=n), sex=sex, status=status)
        session.commit()
    report = _report(client, make_key(scopes=("reports:read",)), "group_by=sex").json
    assert report["suppression"] == {"applied": True, "min_cell": 5, "suppressed_groups": 0}
    assert [row["created"] for row in report["items"]] == [35, 35]
    assert report["totals"]["created"] == 70


@pytest.mark.parametrize("group_by", PERSON)
def test_small_counts_are_hidden_and_cannot_be_worked_out(app: Any, client: Any,
                                                          make_key: Any, group_by: str) -> None:
    prompts = seed_prompts(app, 120, seed=7, pools=POOLS)
    report = _report(client, make_key(scopes=("reports:read",)), f"group_by={group_by}").json
    expected = _expected(prompts, group_by)
    assert report["suppression"]["applied"] is True and report["suppression"]["min_cell"] == 5
    hidden_rows = []
    for row in report["items"]:
        true = _true_counts(expected[row["key"]])
        shown = _shown(row)
        for name, value in shown.items():
            if 1 <= true[name] <= 4:
                assert value is None, (row["key"], name, true[name])
            if value is not None:
                assert value == true[name]
        hidden = {name for name, value in shown.items() if value is None}
        assert row["suppressed"] is bool(hidden)
        rates = row["rates"]
        if shown["pushed"] is None:
            assert set(rates.values()) == {None}
        for rate, count in (("outcome", "with_outcome"), ("conversation", "conversation_had"),
                            ("referral", "referred"), ("decline", "declined")):
            if shown[count] is None:
                assert rates[rate] is None
        hidden_rows.append(hidden)
    hidden_totals = {n for n, v in _shown(report["totals"]).items() if v is None}
    assert any(hidden_rows), "the data should have needed some suppression"
    assert derivable(hidden_rows, hidden_totals, LAYOUT) == []


@pytest.mark.parametrize("group_by", ["ethnicity_group", "deprivation_decile", "topic", "day"])
def test_csv_equals_json(app: Any, client: Any, make_key: Any, group_by: str) -> None:
    seed_prompts(app, 90, seed=3, pools=POOLS)
    key = make_key(scopes=("reports:read",))
    report = _report(client, key, f"group_by={group_by}").json
    response = _report(client, key, f"group_by={group_by}", Accept="text/csv")
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="mecc-outcomes-by-{group_by}-2026-11-05-to-2026-12-04.csv"')
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(table) == len(report["items"]) + 1
    min_cell = report["suppression"]["min_cell"]
    for line, row in zip(table, [*report["items"], report["totals"]], strict=True):
        assert line[group_by] == ((row["key"] or "") if "key" in row else "All")
        for name, value in _shown(row).items():
            assert line[name] == (f"<{min_cell}" if value is None else str(value)), name
        for rate, value in row["rates"].items():
            assert line[f"{rate}_rate"] == ("" if value is None else str(value))
        assert line["suppressed"] == ("yes" if row["suppressed"] else "no")


def test_deprivation_deciles_come_from_the_configured_lookup(app: Any, client: Any,
                                                             make_key: Any) -> None:
    use_settings(app, report_min_cell=0)
    with app.extensions["mecc"].db.session() as session:
        for district in ("M14", "M14", "M15", "M1", None, "LS6"):
            add_prompt(session, at=START + timedelta(days=1), postcode_district=district)
        session.commit()
    report = _report(client, make_key(scopes=("reports:read",)),
                     "group_by=deprivation_decile").json
    assert [(row["key"], row["created"]) for row in report["items"]] == [
        ("1", 1), ("2", 2), ("4", 1), ("unknown", 2)]


def test_the_person_is_as_recorded_at_the_contact(app: Any, client: Any, make_key: Any,
                                                  evaluate_pending: Any) -> None:
    use_settings(app, report_min_cell=0)
    writer = make_key()
    contact = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    # Sixteen the day after this contact: counted as 0-15, whatever their age is now.
    young = make_event(person={"id": "p-young", "birth_date": "2010-11-21", "sex": "male",
                               "ethnicity_group": "black_caribbean",
                               "postcode_district": "m15"},
                       facts={"smoking_status": "current"}, conditions=[],
                       occurred_at=contact.isoformat())
    unknown = make_event(person={"id": "p-unknown", "age": 50}, conditions=[],
                         facts={"smoking_status": "current"}, occurred_at=contact.isoformat())
    for body in (young, unknown):
        post_event(client, writer, body)
    assert evaluate_pending() == 2
    key = make_key(scopes=("reports:read",))
    found = {}
    for group_by in PERSON:
        report = _report(client, key, f"group_by={group_by}").json
        found[group_by] = sorted(row["key"] for row in report["items"])
    assert found == {"ethnicity_group": ["black_caribbean", "unknown"],
                     "age_band": ["0-15", "45-54"], "sex": ["male", "unknown"],
                     "postcode_district": ["M15", "unknown"],
                     "deprivation_decile": ["1", "unknown"]}
    body = _report(client, key, "group_by=ethnicity_group", Accept="text/csv").get_data(
        as_text=True)
    assert "p-young" not in body


def test_a_bound_key_reports_on_its_own_organisation_only(app: Any, client: Any,
                                                          make_key: Any) -> None:
    use_settings(app, report_min_cell=0)
    with app.extensions["mecc"].db.session() as session:
        add_prompt(session, at=START, organisation="Y02345", sex="female")
        add_prompt(session, at=START, organisation="A81001", sex="male")
        session.commit()
    ours = make_key(scopes=("reports:read",))
    report = _report(client, ours, "group_by=sex").json
    assert [row["key"] for row in report["items"]] == ["female"]
    other = client.get(f"{REPORTS}?group_by=sex&organisation=A81001", headers=auth_header(ours))
    assert other.status_code == 404
