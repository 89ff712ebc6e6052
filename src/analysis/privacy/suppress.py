"""Small cells: counts below the threshold shown as ``<k``, complementary cells hidden so none can be
worked out by subtraction (checked by linear programming), Kaplan-Meier steps and responder tables
withheld where a cell is small, and k-anonymity of a client table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linprog

from analysis.privacy.gate import SECONDARY_MARK

# ----------------------------------------------------------------------------- small-cell suppression


def suppress_count(n: Any, min_cell: int) -> str:
    """A count as shown to peers: ``"<5"`` for 1..min_cell-1, else the number; blank for missing.

    >>> suppress_count(3, 5), suppress_count(0, 5), suppress_count(12, 5)
    ('<5', '0', '12')
    """
    if n is None or n is pd.NA or (isinstance(n, float) and math.isnan(n)):
        return ""
    v = float(n)
    if 0 < v < min_cell:
        return f"<{min_cell}"
    return f"{int(v)}" if v.is_integer() else f"{v:g}"


def suppress_table(df: pd.DataFrame, count_cols: Sequence[str], min_cell: int) -> pd.DataFrame:
    """Suppress small counts, plus complementary cells so none can be recovered by subtraction.

    Primary suppression hides every count in 1..min_cell-1. A hidden cell
    could still be worked out from a row total (the sum over ``count_cols``)
    or a column total (the sum over rows) if it were the only hidden cell in
    its row or column. So, until nothing changes: any row or column holding
    exactly one hidden cell also hides its smallest other visible count (a
    total column, if listed in ``count_cols``, is a candidate like any other).
    Rows and columns with a single count cell have nothing to pair with and
    are left as they are. Primary cells show ``"<min_cell"``; complementary
    ones show ``"*"`` (not ``"<5"``, which would be false for them); a report
    footnote should say "* hidden so that a small count cannot be worked out".

    Parameters
    ----------
    df
        Table with count columns (numbers; NaN = not applicable).
    count_cols
        The count columns, including any total column.
    min_cell
        Smallest count that may be shown.

    Returns
    -------
    pandas.DataFrame
        Same shape and columns; ``count_cols`` become strings (``"<5"`` for a
        small count, ``"*"`` for a complementary cell, the count otherwise,
        ``""`` for missing); other columns unchanged.
    """
    cols = list(count_cols)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"count columns not in the table: {missing}")
    values = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    present = ~np.isnan(values)
    primary = present & (values > 0) & (values < min_cell)
    hidden = primary.copy()

    def fix(lines_values: np.ndarray, lines_hidden: np.ndarray, lines_present: np.ndarray) -> bool:
        changed = False
        for i in range(lines_values.shape[0]):
            if lines_hidden[i].sum() == 1:
                candidates = np.where(lines_present[i] & ~lines_hidden[i])[0]
                if len(candidates):
                    j = candidates[np.argmin(lines_values[i, candidates])]
                    lines_hidden[i, j] = True
                    changed = True
        return changed

    changed = True
    while changed:
        # Transposes are views of the same arrays, so marks made column-wise land in `hidden`.
        changed = fix(values, hidden, present) | fix(values.T, hidden.T, present.T)

    out = df.copy()
    for j, c in enumerate(cols):
        shown = [
            f"<{min_cell}" if primary[i, j] else SECONDARY_MARK if hidden[i, j] else suppress_count(values[i, j], 1)
            for i in range(len(df))
        ]
        out[c] = pd.Series(shown, index=df.index, dtype="string")
    return out


def k_anonymity(
    df: pd.DataFrame, quasi: Sequence[str] = ("clinic_id", "sex", "age_band", "knee"), threshold: int = 5
) -> dict[str, int]:
    """k-anonymity of a client table over the quasi-identifiers.

    Parameters
    ----------
    df
        One row per client (e.g. the clients table).
    quasi
        Quasi-identifier columns; missing values form their own class.
    threshold
        Classes smaller than this are counted in ``n_below_threshold``
        (params ``privacy.k_threshold``).

    Returns
    -------
    dict
        ``k`` (size of the smallest class; 0 for an empty table), ``n_classes``,
        ``n_below_threshold`` (classes smaller than ``threshold``) and
        ``n_records_below_threshold`` (rows in those classes).
    """
    quasi = list(quasi)
    missing = [c for c in quasi if c not in df.columns]
    if missing:
        raise KeyError(f"quasi-identifier columns not in the table: {missing}")
    if df.empty:
        return {"k": 0, "n_classes": 0, "n_below_threshold": 0, "n_records_below_threshold": 0}
    sizes = df.groupby(quasi, dropna=False, sort=True, observed=True).size()
    small = sizes[sizes < threshold]
    return {
        "k": int(sizes.min()),
        "n_classes": int(len(sizes)),
        "n_below_threshold": int(len(small)),
        "n_records_below_threshold": int(small.sum()),
    }


def responder_cells_small(entry: dict[str, Any] | None, min_cell: int) -> bool:
    """True if any cell of the responders' 2 x 2 table (responded or not, by group) is in 1..min_cell-1.

    Then proportions, risk differences, odds ratios and their CIs must be withheld from peers: with the
    group sizes they give the small cell back (e.g. RD 0.40 with CI -0.23 to 0.77 allows only 3/3 vs 3/5).
    """
    if not isinstance(entry, dict) or entry.get("status") != "done":
        return False
    n1, r1 = entry.get("n_hip_focused"), entry.get("responders_hip_focused")
    n0, r0 = entry.get("n_comparator"), entry.get("responders_comparator")
    if n1 is None or r1 is None or n0 is None or r0 is None:
        return True
    cells = (r1, n1 - r1, r0, n0 - r0)
    return any(0 < c < min_cell for c in cells)


def km_for_peers(km: pd.DataFrame | None, min_cell: int) -> pd.DataFrame | None:
    """A Kaplan-Meier table safe for peers: each group only while at least ``min_cell`` are at risk.

    Each step of a curve is a person; below ``min_cell`` at risk a step identifies someone's timing.
    Groups that never have ``min_cell`` at risk are dropped entirely.
    """
    if km is None or km.empty or "at_risk" not in km.columns:
        return km
    keep = pd.to_numeric(km["at_risk"], errors="coerce").fillna(0) >= min_cell
    return km[keep].reset_index(drop=True)


def pinned_cells(
    counts: np.ndarray, hidden: np.ndarray, min_cell: int, small: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """Hidden cells of a two-way table that the shown numbers still pin to one value (a linear-programming audit).

    ``counts`` is the full table with its totals in the last row and the last column; ``hidden`` marks the
    cells shown as "<min_cell" or "*"; ``small`` (default: hidden cells whose count is 1..min_cell-1) marks
    those shown as "<min_cell". Every hidden cell is an unknown: one shown as "<min_cell" lies in
    1..min_cell-1, one shown as "*" in 0..(its row total); shown cells are fixed; every row and column
    must add up to its total. For each hidden cell the smallest and largest value consistent with all that
    is found by linear programming (scipy's HiGHS); if they are less than 1 apart the cell is pinned: a peer
    could work it out (the demo's "both groups <5 against a total of 8, so each is 4").

    Returns
    -------
    list of (row, column) of pinned hidden cells; empty when the table is safe.
    """
    counts = np.asarray(counts, dtype=float)
    R, C = counts.shape
    cells = [(i, j) for i in range(R) for j in range(C) if hidden[i, j]]
    if not cells:
        return []
    index = {cell: k for k, cell in enumerate(cells)}
    if small is None:
        small = hidden & (counts > 0) & (counts < min_cell)
    bounds = []
    for i, j in cells:
        cap = float(counts[i, -1] if j < C - 1 else counts[-1, j])
        bounds.append((1.0, min_cell - 1.0) if small[i, j] else (0.0, cap))
    rows_eq, rhs = [], []
    # row i: sum of the group cells = the total cell; column j: sum of the level cells = the totals row
    for lines in (
        [[(i, j) for j in range(C - 1)] + [(i, C - 1)] for i in range(R)],
        [[(i, j) for i in range(R - 1)] + [(R - 1, j)] for j in range(C)],
    ):
        for line in lines:
            parts, total = line[:-1], line[-1]
            a, b = np.zeros(len(cells)), 0.0  # row of A_eq, and its right-hand side
            for cell in parts:
                if cell in index:
                    a[index[cell]] += 1.0
                else:
                    b -= float(counts[cell])
            if total in index:
                a[index[total]] -= 1.0
            else:
                b += float(counts[total])
            if a.any():
                rows_eq.append(a)
                rhs.append(b)
    pinned = []
    for k, cell in enumerate(cells):
        c = np.zeros(len(cells))
        c[k] = 1.0
        lo = linprog(c, A_eq=np.array(rows_eq), b_eq=np.array(rhs), bounds=bounds, method="highs")
        hi = linprog(-c, A_eq=np.array(rows_eq), b_eq=np.array(rhs), bounds=bounds, method="highs")
        solved = lo.status == 0 and hi.status == 0
        if solved and lo.fun is not None and hi.fun is not None and (-hi.fun) - lo.fun < 1.0 - 1e-9:
            pinned.append(cell)
    return pinned
