"""Small-number suppression: every count from 1 to 4 is hidden, and no hidden cell can be
worked out from what is shown — not by one subtraction, nor by solving the table's equations
together (checked exactly, over the rationals)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mecc.reports.suppression import Cell, Hidden, Layout, suppress
from tests.support.disclosure import derivable as check

OUTCOMES = ("conversation_had", "referred", "declined", "not_now", "not_appropriate")
OUTCOME_LAYOUT = Layout(
    columns=("created", "deferred", "pushed", "no_outcome", "with_outcome", *OUTCOMES),
    equations=(("created", ("pushed", "deferred")), ("pushed", ("with_outcome", "no_outcome")),
               ("with_outcome", OUTCOMES)))


def derivable(rows: Sequence[Mapping[str, int]], hidden: Hidden, layout: Layout) -> list[Cell]:
    return check(hidden.rows, hidden.totals, layout)


def outcome_row(counts: Sequence[int], deferred: int, no_outcome: int) -> dict[str, int]:
    row = dict(zip(OUTCOMES, counts, strict=True))
    row["with_outcome"] = sum(counts)
    row["no_outcome"] = no_outcome
    row["pushed"] = row["with_outcome"] + no_outcome
    row["deferred"] = deferred
    row["created"] = row["pushed"] + deferred
    return row


def totals_of(rows: Sequence[Mapping[str, int]], layout: Layout) -> dict[str, int]:
    return {c: sum(r[c] for r in rows) for c in layout.columns}


small = st.integers(min_value=0, max_value=12)
# A report has a group only where there is at least one prompt.
rows_strategy = st.lists(
    st.builds(outcome_row, st.lists(small, min_size=5, max_size=5), small, small)
    .filter(lambda row: row["created"] > 0), min_size=1, max_size=7)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows_strategy)
def test_no_small_count_shows_and_nothing_hidden_can_be_worked_out(rows: list[dict[str, int]]
                                                                     ) -> None:
    totals = totals_of(rows, OUTCOME_LAYOUT)
    hidden = suppress(rows, totals, OUTCOME_LAYOUT, min_cell=5)
    for index, row in enumerate(rows):
        for column in OUTCOME_LAYOUT.columns:
            if 1 <= row[column] <= 4:
                assert column in hidden.rows[index], (index, column)
    assert derivable(rows, hidden, OUTCOME_LAYOUT) == []


def test_one_small_group_hides_a_second_group_too() -> None:
    rows = [outcome_row([20, 10, 5, 5, 5], 6, 9), outcome_row([3, 10, 5, 5, 5], 6, 9),
            outcome_row([30, 10, 5, 5, 5], 6, 9)]
    hidden = suppress(rows, totals_of(rows, OUTCOME_LAYOUT), OUTCOME_LAYOUT, min_cell=5)
    # The 3 conversations hide, and so does the smallest other conversation count (20),
    # else 3 = total - 20 - 30; inside the row, the smallest of with_outcome's other parts.
    assert "conversation_had" in hidden.rows[1]
    assert "conversation_had" in hidden.rows[0]
    assert "conversation_had" not in hidden.rows[2]
    assert not hidden.totals


def test_a_single_group_falls_back_on_hiding_the_total() -> None:
    rows = [outcome_row([3, 10, 5, 5, 5], 6, 9)]
    hidden = suppress(rows, totals_of(rows, OUTCOME_LAYOUT), OUTCOME_LAYOUT, min_cell=5)
    assert "conversation_had" in hidden.totals
    assert derivable(rows, hidden, OUTCOME_LAYOUT) == []


def test_min_cell_zero_or_one_turns_it_off() -> None:
    rows = [outcome_row([1, 2, 3, 4, 0], 1, 1)]
    for off in (0, 1):
        assert not suppress(rows, totals_of(rows, OUTCOME_LAYOUT), OUTCOME_LAYOUT, off).any


def test_a_higher_threshold_hides_more() -> None:
    rows = [outcome_row([7, 10, 12, 12, 12], 12, 12), outcome_row([12] * 5, 12, 12)]
    totals = totals_of(rows, OUTCOME_LAYOUT)
    assert not suppress(rows, totals, OUTCOME_LAYOUT, 5).any
    hidden = suppress(rows, totals, OUTCOME_LAYOUT, 10)
    assert "conversation_had" in hidden.rows[0]


def test_blocks_hide_together() -> None:
    layout = Layout(columns=("n", "a", "b", "c"), equations=(("n", ("a", "b", "c")),),
                    blocks=(("a", "b", "c"),))
    rows = [{"n": 20, "a": 2, "b": 9, "c": 9}, {"n": 30, "a": 10, "b": 10, "c": 10},
            {"n": 30, "a": 10, "b": 10, "c": 10}]
    hidden = suppress(rows, totals_of(rows, layout), layout, 5)
    assert {"a", "b", "c"} <= hidden.rows[0]
    # The column equations need a second group's block hidden as well.
    assert sum({"a", "b", "c"} <= h for h in hidden.rows) == 2
    assert derivable(rows, hidden, layout) == []
