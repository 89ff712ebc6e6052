"""Arm-level summaries of a bounded integer score (NPRS 0-10) that cannot be inverted to the scores.

An arm's mean and SD (findings bundle) together with its median and IQR (Table 1) can admit exactly one
multiset of 0-10 scores: for 5-8 clients, 93-100 % of arms at full precision. The rule here:

* summaries are rounded to :data:`DECIMALS` (1) decimal;
* arms of fewer than :data:`MIN_ARM` (10) clients get none (withheld);
* larger arms get them only when at least :data:`MIN_MULTISETS` (2) different multisets of that many 0-10
  scores show the same rounded mean, SD, median and quartiles (:func:`consistent_multisets`: an exact
  search, which first tries moving one or two clients by a point, then searches every multiset with
  pruning; a search too long to decide withholds).

:func:`n_multisets` lists every multiset (stars and bars over the 11 levels, cached per arm size; 1,144,066 at
13 clients) and is the reference the search is tested against. Pure functions; nothing here reads or writes
files.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

DECIMALS = 1
MIN_ARM = 10
MIN_MULTISETS = 2
SCALE = (0, 10)

RULE = (
    f"Arm-level means, SDs, medians and IQRs of the 0-10 score are rounded to {DECIMALS} decimal and shown only "
    f"for arms of at least {MIN_ARM} clients whose shown values fit at least {MIN_MULTISETS} different sets of "
    "scores (checked by enumerating every set)."
)


def published(values: Sequence[float] | np.ndarray, decimals: int = DECIMALS) -> np.ndarray:
    """The tuple a release shows for each row of scores: mean, SD (ddof 1), Q1, median, Q3, rounded.

    ``values`` is one set of scores (1-d) or many (2-d, one set per row). Quartiles are linear
    interpolation, as :meth:`pandas.Series.quantile`. A tiny offset makes halves round up everywhere.
    """
    x = np.atleast_2d(np.asarray(values, dtype=float))
    q = np.quantile(x, [0.25, 0.5, 0.75], axis=1)
    sd = x.std(axis=1, ddof=1) if x.shape[1] > 1 else np.full(x.shape[0], np.nan)
    cols = [x.mean(axis=1), sd, q[0], q[1], q[2]]
    return np.stack([np.round(c + 1e-9, decimals) for c in cols], axis=1)


@lru_cache(maxsize=16)
def _all_published(n: int, lo: int, hi: int, decimals: int) -> np.ndarray:
    levels = hi - lo + 1
    # stars and bars: each choice of (levels - 1) bar positions among n + levels - 1 slots is one multiset
    bars = np.array(list(itertools.combinations(range(n + levels - 1), levels - 1)), dtype=np.int32)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), n + levels - 1)], axis=1)
    counts = np.diff(edges, axis=1) - 1  # how many clients at each level
    scores = np.repeat(np.tile(np.arange(lo, hi + 1), (len(counts), 1)).ravel(), counts.ravel()).reshape(-1, n)
    return published(scores, decimals)


def n_multisets(values: Sequence[float], lo: int = SCALE[0], hi: int = SCALE[1], decimals: int = DECIMALS) -> int:
    """How many multisets of ``len(values)`` scores on ``lo..hi`` show the same summaries as ``values``.

    >>> n_multisets([5, 5, 5, 5, 5], decimals=6)  # SD 0 and mean 5: only one set of scores fits
    1
    """
    n = len(values)
    table = _all_published(n, lo, hi, decimals)
    target = published(values, decimals)[0]
    same = np.all(np.isclose(table, target, equal_nan=True), axis=1)
    return int(same.sum())


def consistent_multisets(
    values: Sequence[float],
    limit: int = MIN_MULTISETS,
    lo: int = SCALE[0],
    hi: int = SCALE[1],
    decimals: int = DECIMALS,
    budget: int = 200_000,
) -> int:
    """How many multisets (up to ``limit``) of ``len(values)`` scores on ``lo..hi`` show the same summaries;
    -1 when the search needed more than ``budget`` branches (undecided: treat as pinned).

    A depth-first search over how many clients sit at each level, pruned by the sums and sums of squares the
    shown mean and SD allow, each complete multiset checked against all five shown values; it stops at
    ``limit``. Exact like :func:`n_multisets` (which lists every multiset) and usable at any arm size.
    """
    n = len(values)
    target = published(values, decimals)[0]
    if limit <= 2 and _neighbour_fits(values, target, lo, hi, decimals):
        return 2  # the scores themselves and a neighbour show the same: at least two
    half = 0.5 * 10.0**-decimals + 1e-6
    s_lo, s_hi = n * (target[0] - half), n * (target[0] + half)
    var_lo, var_hi = max(target[1] - half, 0.0) ** 2, (target[1] + half) ** 2
    q_lo = (n - 1) * var_lo + min(s_lo**2, max(s_lo, 0.0) ** 2) / n - 1e-6
    q_hi = (n - 1) * var_hi + s_hi**2 / n + 1e-6
    found = 0
    counts = [0] * (hi - lo + 1)
    nodes = [0]
    # quartiles (linear interpolation): x[f] + frac (x[f + 1] - x[f]) at h = (n - 1) p, f = floor(h)
    quarts = [
        (int(np.floor((n - 1) * p)), (n - 1) * p - np.floor((n - 1) * p), t)
        for p, t in zip((0.25, 0.5, 0.75), target[2:], strict=True)
    ]

    def quartiles_possible(placed: int, level: int) -> bool:
        """Can the quartiles still come out as shown, with ``placed`` clients below or at ``level`` sorted?"""
        for f, frac, t in quarts:
            if f < placed:
                xf = float(np.repeat(np.arange(lo, hi + 1), counts)[f])
                if frac == 0:
                    q_min = q_max = xf
                elif f + 1 < placed:
                    q_min = q_max = xf + frac * (float(np.repeat(np.arange(lo, hi + 1), counts)[f + 1]) - xf)
                else:
                    q_min, q_max = xf + frac * (min(level + 1, hi) - xf), xf + frac * (hi - xf)
            else:
                q_min, q_max = float(min(level + 1, hi)), float(hi)
            if q_max < t - half or q_min > t + half:
                return False
        return True

    def search(level: int, left: int, total: float, squares: float) -> None:
        nonlocal found
        if found >= limit:
            return
        if left == 0:
            if s_lo <= total <= s_hi and q_lo <= squares <= q_hi:
                scores = np.repeat(np.arange(lo, hi + 1), counts)
                if np.all(np.isclose(published(scores, decimals)[0], target, equal_nan=True)):
                    found += 1
            return
        if level > hi:
            return
        nodes[0] += 1
        if nodes[0] > budget:
            found = limit  # too many branches to prove either way: stop (the caller withholds, see below)
            nodes[0] = -(10**12)
            return
        # the remaining clients sit at this level or above, their sum R within what the mean allows:
        # their squares are at least R^2 / left (all equal) and at most R (a + b) - left a b (at the ends)
        r_lo, r_hi = max(s_lo - total, left * level), min(s_hi - total, left * hi)
        if r_lo > r_hi + 1e-9:
            return
        if squares + r_lo * r_lo / left > q_hi:
            return
        if squares + r_hi * (level + hi) - left * level * hi < q_lo:
            return
        for c in range(left + 1) if level < hi else (left,):
            counts[level - lo] = c
            if level < hi and not quartiles_possible(n - left + c, level):
                continue
            search(level + 1, left - c, total + c * level, squares + c * level * level)
        counts[level - lo] = 0

    search(lo, n, 0.0, 0.0)
    return -1 if nodes[0] < 0 else found


def _neighbour_fits(values: Sequence[float], target: np.ndarray, lo: int, hi: int, decimals: int) -> bool:
    """True if moving one or two clients one point (a different multiset) shows the same summaries."""
    x = np.sort(np.asarray(values, dtype=float))
    levels = sorted({float(v) for v in x})
    moves = [(a, d) for a in levels for d in (-1, 1) if lo <= a + d <= hi]
    candidates = [[m] for m in moves] + [[m1, m2] for m1 in moves for m2 in moves if m1 < m2 and m1[1] != m2[1]]
    for change in candidates:
        y = x.copy()
        for a, d in change:
            at = np.flatnonzero(y == a)
            if len(at):
                y[int(at[0])] = a + d
        if sorted(y.tolist()) != x.tolist() and np.all(np.isclose(published(y, decimals)[0], target, equal_nan=True)):
            return True
    return False


def summaries_shown(values: Sequence[float], lo: int = SCALE[0], hi: int = SCALE[1]) -> bool:
    """True if an arm's mean, SD, median and IQR may be shown (see the module's rule); missing values dropped."""
    v = [float(x) for x in values if x is not None and np.isfinite(float(x))]
    if len(v) < MIN_ARM:
        return False
    if round(float(np.std(v, ddof=1)) + 1e-9, DECIMALS) == 0:
        return False
    if not all(float(x).is_integer() and lo <= x <= hi for x in v):
        return True  # not a bounded integer score: the enumeration does not apply
    return consistent_multisets(v, MIN_MULTISETS, lo, hi) >= MIN_MULTISETS  # -1 (undecided) withholds


def rounded(value: float | None) -> float | None:
    """A summary as shown: rounded to :data:`DECIMALS`; None stays None."""
    return None if value is None else round(float(value) + 1e-9, DECIMALS)
