"""The pure parts of the reports: age bands, the deprivation lookup, percentiles, the referral
table's suppression (with its means), the FHIR statements."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mecc.referrals.fhir import STATEMENTS
from mecc.reports import deprivation
from mecc.reports.attributes import AGE_BANDS, age_band, group_order, person_attributes
from mecc.reports.referrals import COUNTS, LAYOUT, SCORES, STATUSES
from mecc.reports.staff_load import percentile, summarise
from mecc.reports.suppression import suppress
from mecc.store.referrals import PERSONAL_OUTCOME_ITEMS
from tests.support import ROOT
from tests.support.disclosure import derivable


@pytest.mark.parametrize(("age", "band"), [
    (0, "0-15"), (15, "0-15"), (16, "16-24"), (24, "16-24"), (25, "25-34"), (44, "35-44"),
    (45, "45-54"), (64, "55-64"), (65, "65-74"), (74, "65-74"), (75, "75+"), (130, "75+"),
    (None, None), (-1, None)])
def test_age_bands_are_the_contracts(age: int | None, band: str | None) -> None:
    assert age_band(age) == band


def test_person_attributes_come_from_the_contact_facts() -> None:
    assert person_attributes({"age": 40, "sex": "female", "ethnicity_group": "chinese",
                              "postcode_district": "M14", "bmi": 30.0}) == {
        "age_band": "35-44", "sex": "female", "ethnicity_group": "chinese",
        "postcode_district": "M14"}
    assert set(person_attributes({}).values()) == {None}


def test_ordinal_groups_keep_their_natural_order() -> None:
    assert group_order("age_band", ["unknown", "75+", "0-15", "25-34"]) == [
        "0-15", "25-34", "75+", "unknown"]
    assert group_order("deprivation_decile", ["10", "unknown", "2", "1"]) == [
        "1", "2", "10", "unknown"]
    assert group_order("sex", ["male"]) is None
    assert len(AGE_BANDS) == 8


def test_the_example_lookup_parses_and_is_never_the_live_file(tmp_path: Path) -> None:
    example = ROOT / "config" / "deprivation" / "postcode_district_deciles.EXAMPLE.csv"
    table = deprivation.parse_lookup(example, example.read_text())
    assert table["M14"] == 2 and all(1 <= d <= 10 for d in table.values())
    assert "EXAMPLE" in example.read_text().splitlines()[0]
    assert deprivation.load_lookup(tmp_path) == {}  # no real file: everything is unknown
    (tmp_path / "deprivation").mkdir()
    (tmp_path / "deprivation" / "postcode_district_deciles.csv").write_text(
        "postcode_district,decile\nm14,3\n")
    lookup = deprivation.load_lookup(tmp_path)
    assert deprivation.decile_of("M14", lookup) == "3"
    assert deprivation.decile_of("M15", lookup) == "unknown"
    assert deprivation.decile_of(None, lookup) == "unknown"


@pytest.mark.parametrize(("text", "line"), [
    ("district,decile\nM14,3\n", 1),
    ("postcode_district,decile\nM14,11\n", 2),
    ("postcode_district,decile\nM14,x\n", 2),
    ("postcode_district,decile\nM14,3\nM14,4\n", 3),
])
def test_a_broken_lookup_names_its_line(text: str, line: int) -> None:
    with pytest.raises(deprivation.DeprivationLookupError, match=f"line {line}"):
        deprivation.parse_lookup(Path("lookup.csv"), text)


def test_percentiles_interpolate_like_percentile_cont() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7], 0.9) == 7
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile(range(1, 11), 0.9) == 9.1
    summary = summarise([("s1", "blue", "d1", 5), ("s1", "blue", "d2", 5),
                         ("s2", "blue", "d1", 1), ("s3", "red", "d1", 2),
                         (None, None, "d1", 4)])
    assert summary["per_staff_day"] == {"median": 3.5, "p90": 5.0, "max": 5}
    assert summary["staff_days"] == 4 and summary["without_staff"] == 4
    assert summary["pushed"] == 17 and summary["staff"] == 3
    blue = next(t for t in summary["teams"] if t["team"] == "blue")
    assert (blue["staff"], blue["staff_days"], blue["median"], blue["max"]) == (2, 3, 5.0, 5)


def _referral_row(draw: st.DrawFn) -> dict[str, int]:
    statuses = [draw(st.integers(0, 9)) for _ in STATUSES]
    row = dict.fromkeys(COUNTS, 0)
    row.update({f"status:{s}": n for s, n in zip(STATUSES, statuses, strict=True)})
    row["referrals"] = sum(statuses) or 1
    row["status:requested"] += 0 if sum(statuses) else 1
    row["accepted"] = draw(st.integers(0, row["referrals"]))
    row["attended"] = draw(st.integers(0, row["accepted"]))
    row["did_not_attend"] = draw(st.integers(0, row["accepted"] - row["attended"]))
    for item in PERSONAL_OUTCOME_ITEMS[:2]:  # two items keep the exact check quick
        scores = [draw(st.integers(0, 6)) for _ in SCORES]
        row.update({f"{item}:{k}": n for k, n in zip(SCORES, scores, strict=True)})
        row[f"{item}:responses"] = sum(scores)
        row[f"{item}:sum"] = sum(k * n for k, n in zip(SCORES, scores, strict=True))
    return row


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.composite(_referral_row)(), min_size=1, max_size=4))
def test_referral_tables_hide_small_numbers_and_means_give_nothing_away(
        rows: list[dict[str, int]]) -> None:
    totals = {c: sum(r[c] for r in rows) for c in COUNTS}
    hidden = suppress(rows, totals, LAYOUT, 5)
    for row, cells in zip(rows, hidden.rows, strict=True):
        assert all(c in cells for c in COUNTS if 1 <= row[c] <= 4)
        for item in PERSONAL_OUTCOME_ITEMS:
            block = {f"{item}:{k}" for k in SCORES}
            assert block <= cells or not block & cells, "a distribution shows whole or not"
    assert derivable(hidden.rows, hidden.totals, LAYOUT) == []


def test_the_six_statements_are_the_six_items() -> None:
    assert tuple(STATEMENTS) == PERSONAL_OUTCOME_ITEMS


def test_the_lookup_builder_takes_each_districts_median_rank() -> None:
    import csv
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location(
        "build_deprivation_lookup", ROOT / "scripts" / "build_deprivation_lookup.py")
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    iod = ("LSOA code (2011),LSOA name (2011),Index of Multiple Deprivation (IMD) Rank,"
           "Index of Multiple Deprivation (IMD) Decile\n"
           + "".join(f"L{n},Area {n},{n},{(n - 1) // 10 + 1}\n" for n in range(1, 101)))
    reader = csv.DictReader(io.StringIO(iod))
    ranks = builder.read_ranks(reader, list(reader.fieldnames or []))
    postcodes = [
        {"pcds": "M14 5AB", "doterm": "", "usertype": "0", "ctry": "E92000001", "lsoa11": "L3"},
        {"pcds": "M14 6CD", "doterm": "", "usertype": "0", "ctry": "E92000001", "lsoa11": "L15"},
        {"pcds": "M14 7EF", "doterm": "", "usertype": "0", "ctry": "E92000001", "lsoa11": "L18"},
        {"pcds": "M14 8GH", "doterm": "201501", "usertype": "0", "ctry": "E92000001",
         "lsoa11": "L99"},  # terminated
        {"pcds": "M20 1AA", "doterm": "", "usertype": "1", "ctry": "E92000001",
         "lsoa11": "L1"},  # a large user
        {"pcds": "M20 2BB", "doterm": "", "usertype": "0", "ctry": "E92000001", "lsoa11": "L95"},
        {"pcds": "CF10 1AA", "doterm": "", "usertype": "0", "ctry": "W92000004",
         "lsoa11": "L2"},  # Wales: a different index
    ]
    assert builder.district_deciles(ranks, postcodes, "lsoa11") == {"M14": 2, "M20": 10}
    out = io.StringIO()
    builder.write({"M14": 2}, out)
    assert deprivation.parse_lookup(Path("built.csv"), out.getvalue()) == {"M14": 2}
