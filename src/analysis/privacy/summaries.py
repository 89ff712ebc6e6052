"""Arm-level summaries of a bounded integer score (NPRS 0-10) that cannot be inverted to the scores.

An arm's mean and SD (findings bundle) together with its median and IQR (Table 1) can admit exactly one
multiset of 0-10 scores: for 5-8 clients, 93-100 % of arms at full precision. The rule here:

* summaries are rounded to :data:`DECIMALS` (1) decimal;
* arms of fewer than :data:`MIN_ARM` (10) clients get none (withheld);
* arms of :data:`MIN_ARM` .. :data:`ENUMERATE_UP_TO` clients get them only when an exhaustive enumeration
  of every multiset of that size on the scale finds at least :data:`MIN_MULTISETS` (2) multisets with the
  same published (rounded) mean, SD, median and quartiles;
* larger arms get them unless the SD rounds to 0 (nearly everyone has the same score).

The enumeration is exact (stars and bars over the 11 levels), cached per arm size; at 13 clients it holds
497,420 multisets. Pure functions; nothing here reads or writes files.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

DECIMALS = 1
MIN_ARM = 10
ENUMERATE_UP_TO = 13
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


def summaries_shown(values: Sequence[float], lo: int = SCALE[0], hi: int = SCALE[1]) -> bool:
    """True if an arm's mean, SD, median and IQR may be shown (see the module's rule); missing values dropped."""
    v = [float(x) for x in values if x is not None and np.isfinite(float(x))]
    if len(v) < MIN_ARM:
        return False
    if round(float(np.std(v, ddof=1)) + 1e-9, DECIMALS) == 0:
        return False
    if len(v) > ENUMERATE_UP_TO:
        return True
    if not all(float(x).is_integer() and lo <= x <= hi for x in v):
        return True  # not a bounded integer score: the enumeration does not apply
    return n_multisets(v, lo, hi) >= MIN_MULTISETS


def rounded(value: float | None) -> float | None:
    """A summary as shown: rounded to :data:`DECIMALS`; None stays None."""
    return None if value is None else round(float(value) + 1e-9, DECIMALS)
