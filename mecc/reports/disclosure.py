"""Which hidden cells of a report table could still be worked out (pure, exact arithmetic).

Hiding a cell wherever one subtraction would give it back (mecc.reports.suppression) is not
always enough: several equations solved together can pin a cell down, e.g. a group with no
outcomes forces its hidden `referred` and `declined` to 0, and the column totals then hand
over another group's pair, and its row total the third hidden outcome. This module finds every
hidden cell that the shown cells and the table's linear equations determine.

The equations are the row equations (within each group row and the totals row) and one per
column (total = sum of the groups). A hidden cell x is determined exactly when its unit vector
lies in the span of the equations restricted to the hidden cells. The column equations are
few (one per column), so the test is done per row: with λ the column equations' coefficients,
the other rows force λ, restricted to their hidden columns, into their own row-equation space;
row r's cell is determined when e_c ∈ E_r + {λ|H_r : λ allowed by the other rows}. Rows with
the same hidden columns impose the same condition, so the work grows with the number of
distinct patterns, not the number of groups.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

Vector = list[Fraction]
Equation = tuple[tuple[str, int], ...]  # (column, coefficient) pairs summing to zero
Basis = list[tuple[int, Vector]]  # row-reduced: (pivot index, row with 1 at the pivot)


def _reduce(basis: Basis, vector: Vector) -> Vector:
    for pivot, row in basis:
        if vector[pivot]:
            factor = vector[pivot]
            vector = [a - factor * b for a, b in zip(vector, row, strict=True)]
    return vector


def _extend(basis: Basis, vectors: Sequence[Vector]) -> Basis:
    """A reduced basis of span(basis ∪ vectors); every row is zero at the other pivots."""
    out = list(basis)
    for vector in vectors:
        vector = _reduce(out, list(vector))
        pivot = next((k for k, a in enumerate(vector) if a), None)
        if pivot is None:
            continue
        vector = [a / vector[pivot] for a in vector]
        out = [(p, [a - r[pivot] * b for a, b in zip(r, vector, strict=True)]) for p, r in out]
        out.append((pivot, vector))
    return out


def _in_span(basis: Basis, vector: Vector) -> bool:
    return not any(_reduce(basis, vector))


def _nullspace(basis: Basis, size: int) -> list[Vector]:
    """A basis of {x : v·x = 0 for every v in the span of `basis`} (fully reduced input)."""
    pivots = {p: row for p, row in basis}
    out = []
    for free in (k for k in range(size) if k not in pivots):
        x = [Fraction(0)] * size
        x[free] = Fraction(1)
        for p, row in pivots.items():
            x[p] = -row[free]
        out.append(x)
    return out


def _unit(size: int, index: int) -> Vector:
    return [Fraction(int(k == index)) for k in range(size)]


def determined(hidden_rows: Sequence[frozenset[str]], columns: Sequence[str],
               equations: Sequence[Equation]) -> list[tuple[int, str]]:
    """(row index, column) of every hidden cell the rest of the table determines.

    `hidden_rows`: the hidden columns of each row, the totals row included as one of them
    (which one does not matter: a column equation ties every row alike).
    """
    index = {c: k for k, c in enumerate(columns)}
    width = len(columns)
    patterns = Counter(h for h in hidden_rows if h)
    order = list(patterns)
    local: list[tuple[list[str], Basis]] = []
    constraints: list[Basis] = []
    for pattern in order:
        hidden = sorted(pattern, key=index.__getitem__)
        position = {c: k for k, c in enumerate(hidden)}
        row_space = _extend([], [_restrict(eq, position) for eq in equations])
        local.append((hidden, row_space))
        # λ restricted to this row's hidden columns must lie in its row space: λ|H · y = 0
        # for every y orthogonal to that space.
        orthogonal = _nullspace(row_space, len(hidden))
        constraints.append(_extend([], [_pad(y, hidden, index, width) for y in orthogonal]))
    # What every row but one allows, for each pattern: prefix and suffix spans of constraints.
    prefix: list[Basis] = [[]]
    for basis in constraints:
        prefix.append(_extend(prefix[-1], [row for _, row in basis]))
    suffix: list[Basis] = [[]]
    for basis in reversed(constraints):
        suffix.append(_extend(suffix[-1], [row for _, row in basis]))
    suffix.reverse()
    found_by_pattern: dict[frozenset[str], list[str]] = {}
    for n, pattern in enumerate(order):
        hidden, row_space = local[n]
        # A second row with the same hidden columns constrains λ as this row's own would.
        others = (_extend(prefix[n], [r for _, r in suffix[n + 1]]) if patterns[pattern] == 1
                  else prefix[-1])
        allowed = _nullspace(others, width)
        span = _extend(row_space, [[x[index[c]] for c in hidden] for x in allowed])
        found_by_pattern[pattern] = [c for k, c in enumerate(hidden)
                                     if _in_span(span, _unit(len(hidden), k))]
    found: list[tuple[int, str]] = []
    for row, pattern in enumerate(hidden_rows):
        if pattern:
            found.extend((row, c) for c in found_by_pattern[pattern])
    return found


def _restrict(equation: Equation, position: dict[str, int]) -> Vector:
    vector = [Fraction(0)] * len(position)
    for column, coefficient in equation:
        if column in position:
            vector[position[column]] += coefficient
    return vector


def _pad(vector: Vector, hidden: list[str], index: dict[str, int], width: int) -> Vector:
    out = [Fraction(0)] * width
    for value, column in zip(vector, hidden, strict=True):
        out[index[column]] = value
    return out
