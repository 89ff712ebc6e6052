"""Release-wide checks: no hidden count can be worked out from the other numbers of the same release, and
the output-checking rules of SACRO/ACRO (dominance, residual degrees of freedom) applied to what is shared.

A release is everything that leaves the clinic together: the peer report (HTML and PDF: flow, Table 1
headers, the primary n) and the findings bundle. Each client count in it is a :class:`Count` (its true
value and what is shown: a number, ``"<k"`` or ``"*"``); a :class:`Relation` states what a peer knows
about how counts relate (a group's clients add up to the total; the analysed clients of a group are
among the group's clients; the clients with an endpoint are among the analysed). :func:`derivable`
solves, by linear programming, the smallest and largest value every hidden count can take given the
shown ones and the relations; a hidden count whose range is narrower than 1 is derivable.
:func:`coarsen` hides more until none is. Pure functions; nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from analysis.privacy.gate import SECONDARY_MARK

SAFE_DOF = 10  # ACRO's default safe residual degrees of freedom for a model
DOMINANCE_N_K = ((2, 0.9),)  # ACRO's default N-k rule: the largest 2 contributors hold at least 90 % of the total
DOMINANCE_P = 0.10  # ACRO's default p-ratio: the rest (total minus the largest two) under 10 % of the largest


@dataclass(frozen=True)
class Count:
    """One client count in a release: ``name`` (where it is shown), its true ``value`` and how it is ``shown``."""

    name: str
    value: int
    shown: str

    @property
    def hidden(self) -> bool:
        return not self.shown.strip().isdigit()

    @property
    def small(self) -> bool:
        """Shown as ``"<k"``: a peer knows it is 1..k-1."""
        return self.shown.strip().startswith("<")


@dataclass(frozen=True)
class Relation:
    """``sum(left) == sum(right)`` (``kind="eq"``) or ``sum(left) <= sum(right)`` (``kind="le"``)."""

    left: tuple[str, ...]
    right: tuple[str, ...]
    kind: str = "eq"


def derivable(counts: Sequence[Count], relations: Iterable[Relation], min_cell: int) -> list[str]:
    """Names of hidden counts that the shown counts and the relations pin to one value (range < 1).

    A count shown as ``"<k"`` lies in 1..min_cell-1; one shown as ``"*"`` in 0..(the largest count in the
    release); a shown count is fixed. Relations naming a count not in ``counts`` are skipped.
    """
    from scipy.optimize import linprog

    by_name = {c.name: c for c in counts}
    hidden = [c for c in counts if c.hidden]
    if not hidden:
        return []
    index = {c.name: k for k, c in enumerate(hidden)}
    cap = float(max(c.value for c in counts))
    bounds = [(1.0, min_cell - 1.0) if c.small else (0.0, cap) for c in hidden]
    eq_a: list[np.ndarray] = []
    le_a: list[np.ndarray] = []
    eq_b: list[float] = []
    le_b: list[float] = []
    for rel in relations:
        if not all(n in by_name for n in (*rel.left, *rel.right)):
            continue
        a, b = np.zeros(len(hidden)), 0.0
        for sign, names in ((1.0, rel.left), (-1.0, rel.right)):
            for n in names:
                if n in index:
                    a[index[n]] += sign
                else:
                    b -= sign * float(by_name[n].value)
        if not a.any():
            continue
        (eq_a if rel.kind == "eq" else le_a).append(a)
        (eq_b if rel.kind == "eq" else le_b).append(b)
    a_eq, b_eq = (np.array(eq_a), np.array(eq_b)) if eq_a else (None, None)
    a_ub, b_ub = (np.array(le_a), np.array(le_b)) if le_a else (None, None)

    def solve(obj: np.ndarray) -> Any:
        return linprog(obj, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")

    out = []
    for k, c in enumerate(hidden):
        obj = np.zeros(len(hidden))
        obj[k] = 1.0
        lo, hi = solve(obj), solve(-obj)
        if lo.status == 0 and hi.status == 0 and (-hi.fun) - lo.fun < 1.0 - 1e-9:
            out.append(c.name)
    return out


def coarsen(counts: Sequence[Count], relations: Sequence[Relation], min_cell: int) -> list[Count]:
    """``counts`` with more of them hidden (``"*"``) until :func:`derivable` finds none.

    Each round hides the smallest shown count that shares a relation with a derivable one; when none is
    left to hide, a derivable ``"<k"`` becomes ``"*"`` (its bound was the clue).
    """
    out = list(counts)
    for _ in range(2 * len(out) + 1):
        pinned = set(derivable(out, relations, min_cell))
        if not pinned:
            return out
        near = {n for r in relations if pinned & {*r.left, *r.right} for n in (*r.left, *r.right)}
        shown = sorted((c.value, c.name) for c in out if c.name in near and not c.hidden)
        if shown:
            target = shown[0][1]
            out = [replace(c, shown=SECONDARY_MARK) if c.name == target else c for c in out]
        else:
            out = [replace(c, shown=SECONDARY_MARK) if c.name in pinned else c for c in out]
            if all(c.hidden and not c.small for c in out if c.name in near):
                break
    return out


def dominance(values: Sequence[float]) -> list[str]:
    """ACRO's dominance rules on a total of non-negative contributions (e.g. an arm's baseline scores).

    N-k: the largest N contributions hold at least k of the total (ACRO's default N=2, k=90 %); p-ratio: the
    total minus the two largest is under 10 % of the largest (a contributor could estimate the largest).
    ACRO's ``safe_nk_n``, ``safe_nk_k`` and ``safe_pratio_p`` defaults (acro 1.0.2, ``default.yaml``).

    Returns
    -------
    list of str, one per rule broken; empty when the total may be shown.
    """
    v = sorted((float(x) for x in values if x is not None and np.isfinite(float(x)) and float(x) >= 0), reverse=True)
    total = sum(v)
    if total <= 0:
        return []
    out = [f"the largest {n} hold {k:.0%} or more of the total" for n, k in DOMINANCE_N_K if sum(v[:n]) >= k * total]
    if len(v) >= 1 and total - sum(v[:2]) < DOMINANCE_P * v[0]:
        out.append(f"p% rule: the rest is under {DOMINANCE_P:.0%} of the largest")
    return out


def residual_dof(n_units: int | None, n_params: int) -> int | None:
    """Residual degrees of freedom of a model as ACRO counts them (statsmodels' ``df_resid``): observations
    minus estimated parameters."""
    return None if n_units is None else int(n_units) - int(n_params)


def shown_counts(values: Mapping[str, tuple[int, str]]) -> list[Count]:
    """Counts from ``{name: (true value, shown text)}``, sorted by name."""
    return [Count(name, int(v), str(s)) for name, (v, s) in sorted(values.items())]
