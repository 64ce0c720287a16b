"""Small-number suppression for report tables (pure: no database, no Flask).

A report table is a list of group rows of counts and a totals row. In a grouping by a person
attribute a count from 1 to `min_cell - 1` could point at a few identifiable people, so:

1. **Primary**: every such count in a group row is hidden.
2. **Blocks**: cells that are only published together (the distribution of one answer) are
   hidden together when any of them is.
3. **Secondary**: the table's equations are public — within a row (created = pushed +
   deferred, pushed = with an outcome + no outcome, ...) and down each column (total = the sum
   of the groups). An equation with exactly one hidden cell gives that cell away by
   subtraction, so another of its cells is hidden too: a group's before a total's, any count
   before the layout's precious ones (a rate's denominator), a positive count before a zero,
   the smallest first (it costs the reader least). Repeated until no
   equation has exactly one hidden cell.
4. **Exact check**: equations solved together can still pin a hidden cell down
   (mecc.reports.disclosure finds every such cell); each one found gets a partner hidden
   beside it, by the same preference, and steps 2-4 repeat until nothing can be worked out.

Totals are never hidden for their own size (the ungrouped report shows them anyway); a total
is hidden only as the last resort of step 3, when a column has a single group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mecc.reports.disclosure import Equation, determined

TOTAL = -1  # the totals row's index in a Cell
Cell = tuple[int, str]  # (row index or TOTAL, column)


@dataclass(frozen=True)
class Layout:
    """The columns of a table and what ties them within every row: `equations` are (sum
    column, part columns); `weighted` are other public linear relations, as (column,
    coefficient) pairs summing to zero (a mean shown beside its distribution); `blocks` are
    column sets hidden together."""

    columns: tuple[str, ...]
    equations: tuple[tuple[str, tuple[str, ...]], ...] = ()
    weighted: tuple[Equation, ...] = ()
    blocks: tuple[tuple[str, ...], ...] = ()
    # Hidden last when there is a choice, most precious first: the denominators of the rates
    # (hiding `pushed` would blank every rate of its group).
    precious: tuple[str, ...] = ()

    @property
    def linear(self) -> tuple[Equation, ...]:
        """Every row relation as (column, coefficient) pairs summing to zero."""
        return tuple(((whole, 1), *((p, -1) for p in parts))
                     for whole, parts in self.equations) + self.weighted


@dataclass
class Hidden:
    """Which cells are hidden: per group row (in order), and in the totals row."""

    rows: list[set[str]]
    totals: set[str] = field(default_factory=set)

    def row(self, index: int) -> set[str]:
        return self.totals if index == TOTAL else self.rows[index]

    @property
    def any(self) -> bool:
        return bool(self.totals) or any(self.rows)


def nothing_hidden(count: int) -> Hidden:
    return Hidden(rows=[set() for _ in range(count)])


def suppress(rows: Sequence[Mapping[str, int]], totals: Mapping[str, int], layout: Layout,
             min_cell: int) -> Hidden:
    """The cells to hide so that no count from 1 to min_cell - 1 shows or can be recovered
    by subtraction from a total (min_cell 0 or 1: nothing is hidden)."""
    hidden = nothing_hidden(len(rows))
    if min_cell <= 1:
        return hidden

    def value(cell: Cell) -> int:
        index, column = cell
        return int(totals[column] if index == TOTAL else rows[index][column])

    for index, row in enumerate(rows):
        hidden.rows[index].update(c for c in layout.columns if 0 < row[c] < min_cell)
    equations = _equations(len(rows), layout)

    keep = {c: len(layout.precious) - n for n, c in enumerate(layout.precious)}

    def rank(cell: Cell) -> tuple[bool, int, bool, int]:
        # A group's cell before a total's; an ordinary count before a precious one; a positive
        # count before a zero; the smallest.
        return (cell[0] == TOTAL, keep.get(cell[1], 0), value(cell) == 0, value(cell))

    while hidden.any:
        _close(hidden, len(rows), layout, equations, rank)
        pinned = determined([frozenset(r) for r in (*hidden.rows, hidden.totals)],
                            layout.columns, layout.linear)
        if not pinned:
            break
        added = False
        seen: set[int] = set()
        for index, column in pinned:
            at = TOTAL if index == len(rows) else index
            if at in seen:
                continue
            seen.add(at)
            partners = [c for c in _partners((at, column), len(rows), layout)
                        if c[1] not in hidden.row(c[0])]
            if partners:
                pick = min(partners, key=rank)
                hidden.row(pick[0]).add(pick[1])
                added = True
        if not added:  # pinned through a longer chain: widen to any visible cell
            anywhere = [(i, c) for i in (*range(len(rows)), TOTAL) for c in layout.columns
                        if c not in hidden.row(i)]
            if not anywhere:
                break
            pick = min(anywhere, key=rank)
            hidden.row(pick[0]).add(pick[1])
    return hidden


def _close(hidden: Hidden, count: int, layout: Layout, equations: list[list[Cell]],
           rank: Callable[[Cell], tuple[bool, int, bool, int]]) -> None:
    """Blocks whole, and no equation with exactly one hidden cell."""
    changed = True
    while changed:
        changed = _close_blocks(hidden, count, layout)
        for cells in equations:
            concealed = [c for c in cells if c[1] in hidden.row(c[0])]
            if len(concealed) != 1:
                continue
            visible = [c for c in cells if c[1] not in hidden.row(c[0])]
            if visible:
                pick = min(visible, key=rank)
                hidden.row(pick[0]).add(pick[1])
                changed = True


def _partners(cell: Cell, count: int, layout: Layout) -> list[Cell]:
    """Cells sharing an equation with `cell`: its row's relations and its column."""
    index, column = cell
    same_row = {c for eq in layout.linear if column in dict(eq) for c, _ in eq} - {column}
    return ([(index, c) for c in sorted(same_row)]
            + [(i, column) for i in (*range(count), TOTAL) if i != index])


def _equations(count: int, layout: Layout) -> list[list[Cell]]:
    equations: list[list[Cell]] = []
    for index in (*range(count), TOTAL):
        for eq in layout.linear:
            equations.append([(index, column) for column, _ in eq])
    if count:
        for column in layout.columns:
            equations.append([(TOTAL, column), *((i, column) for i in range(count))])
    return equations


def _close_blocks(hidden: Hidden, count: int, layout: Layout) -> bool:
    changed = False
    for index in (*range(count), TOTAL):
        row = hidden.row(index)
        for block in layout.blocks:
            if row & set(block) and not set(block) <= row:
                row.update(block)
                changed = True
    return changed
