"""An independent check of small-number suppression: which hidden cells of a report table the
shown cells and the table's linear equations determine, found by Gaussian elimination over
the rationals on the whole system at once (no shortcuts shared with mecc.reports.disclosure).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

TOTAL = -1


def derivable(hidden_rows: Sequence[set[str]], hidden_totals: set[str], layout: Any
              ) -> list[tuple[int, str]]:
    """Hidden cells (row index, or TOTAL, and column) that can be worked out exactly.

    `layout` is a mecc.reports.suppression.Layout: its row equations hold in every row and
    the totals row, and every column's total is the sum of its groups.
    """
    rows = len(hidden_rows)

    def hidden(index: int) -> set[str]:
        return hidden_totals if index == TOTAL else hidden_rows[index]

    unknowns = [(i, c) for i in (*range(rows), TOTAL) for c in layout.columns if c in hidden(i)]
    position = {cell: n for n, cell in enumerate(unknowns)}
    equations: list[list[tuple[tuple[int, str], int]]] = []
    for i in (*range(rows), TOTAL):
        equations.extend([((i, c), k) for c, k in eq] for eq in layout.linear)
    equations.extend([((TOTAL, c), 1), *(((i, c), -1) for i in range(rows))]
                     for c in layout.columns)
    basis: list[tuple[int, list[Fraction]]] = []
    for equation in equations:
        vector = [Fraction(0)] * len(unknowns)
        for cell, coefficient in equation:
            if cell in position:
                vector[position[cell]] += coefficient
        _add(basis, vector)
    found = []
    for cell, n in position.items():
        probe = _reduce(basis, [Fraction(int(k == n)) for k in range(len(unknowns))])
        if not any(probe):
            found.append(cell)
    return found


def _reduce(basis: list[tuple[int, list[Fraction]]], vector: list[Fraction]) -> list[Fraction]:
    for pivot, row in basis:
        if vector[pivot]:
            factor = vector[pivot]
            vector = [a - factor * b for a, b in zip(vector, row, strict=True)]
    return vector


def _add(basis: list[tuple[int, list[Fraction]]], vector: list[Fraction]) -> None:
    vector = _reduce(basis, vector)
    pivot = next((k for k, a in enumerate(vector) if a), None)
    if pivot is not None:
        basis.append((pivot, [a / vector[pivot] for a in vector]))
