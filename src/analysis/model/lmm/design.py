"""Setup: data and formulas -> the model's matrices and per-client sufficient statistics.

lme4's ``lFormula`` step. The model is

    y = X beta + Z b + e,   b_i ~ N(0, sigma^2 T T'),   e ~ N(0, sigma^2 I)

with one grouping factor (clients) and ``q`` random-effect columns per group
(``q = 1`` for a random intercept, ``2`` for intercept and slope). Because the
penalised least-squares system is block-diagonal by group, every later step
needs only these per-group cross-products (Bates et al. 2015, JSS 67(1),
section 3; MixedModels.jl keeps the same blocks):

- ``ZtZ[g]`` (q x q), ``ZtX[g]`` (q x p), ``Zty[g]`` (q), ``n[g]``;
- the totals ``XtX`` (p x p), ``Xty`` (p), ``yty``, ``n_obs``.

They are built once, in O(observations), as products of a sparse group-indicator matrix with
the rows sorted by group: no Python loop over clients.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import patsy
from scipy import sparse

from analysis.errors import ModelError


@dataclass(frozen=True)
class Design:
    """The model's matrices (rows sorted by group, stable) and sufficient statistics.

    Attributes
    ----------
    X, Z : fixed- and random-effects design matrices (n x p, n x q).
    y : response (n).
    group_codes : group index 0..G-1 of every row (non-decreasing).
    order : position of each sorted row in the caller's data (``data.iloc[order]``).
    group_labels : label of each group, in code order.
    fixed_names, re_names : column names of X and Z.
    ZtZ, ZtX, Zty, n_per_group : per-group cross-products, shapes (G,q,q), (G,q,p), (G,q), (G,).
    XtX, Xty, yty : totals.
    """

    X: np.ndarray
    Z: np.ndarray
    y: np.ndarray
    group_codes: np.ndarray
    order: np.ndarray
    group_labels: np.ndarray
    fixed_names: list[str]
    re_names: list[str]
    ZtZ: np.ndarray
    ZtX: np.ndarray
    Zty: np.ndarray
    n_per_group: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_groups(self) -> int:
        return int(self.n_per_group.shape[0])

    @property
    def p(self) -> int:
        return int(self.X.shape[1])

    @property
    def q(self) -> int:
        return int(self.Z.shape[1])


def from_arrays(
    X: np.ndarray,
    Z: np.ndarray,
    y: np.ndarray,
    groups: npt.ArrayLike,
    fixed_names: list[str] | None = None,
    re_names: list[str] | None = None,
) -> Design:
    """Build a :class:`Design` from matrices and a group label per row (any order).

    Rows are sorted stably by group label; ``Design.order`` maps back.
    """
    X = np.asarray(X, dtype=float)
    Z = np.asarray(Z, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    if X.ndim != 2 or Z.ndim != 2 or X.shape[0] != y.shape[0] or Z.shape[0] != y.shape[0]:
        raise ModelError("design matrices and response have different numbers of rows")
    if y.shape[0] == 0:
        raise ModelError("the model has no observations")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Z)) and np.all(np.isfinite(y))):
        raise ModelError("the model's data contain missing or non-finite values")
    codes, labels = pd.factorize(pd.Series(groups).reset_index(drop=True), sort=True)
    if (codes < 0).any():
        raise ModelError("the grouping column has missing values")
    order = np.argsort(codes, kind="stable")
    X, Z, y, codes = X[order], Z[order], y[order], codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    n_g = np.diff(np.r_[starts, len(codes)])
    q, p, n = Z.shape[1], X.shape[1], y.shape[0]
    # per-group sums as one sparse (G x n) indicator product per column of Z: a third of the time of
    # np.add.reduceat over (n, q, p) products, and no (n, q, p) temporary
    S = sparse.csr_array((np.ones(n), np.arange(n), np.r_[starts, n]), shape=(len(starts), n))
    ZtZ = np.stack([S @ (Z[:, [r]] * Z) for r in range(q)], axis=1)
    ZtX = np.stack([S @ (Z[:, [r]] * X) for r in range(q)], axis=1)
    Zty = S @ (Z * y[:, None])
    return Design(
        X=X,
        Z=Z,
        y=y,
        group_codes=codes,
        order=order,
        group_labels=np.asarray(labels),
        fixed_names=list(fixed_names) if fixed_names is not None else [f"x{i}" for i in range(p)],
        re_names=list(re_names) if re_names is not None else [f"z{i}" for i in range(q)],
        ZtZ=ZtZ,
        ZtX=ZtX,
        Zty=Zty,
        n_per_group=n_g,
        XtX=X.T @ X,
        Xty=X.T @ y,
        yty=float(y @ y),
    )


def from_formula(data: pd.DataFrame, formula: str, groups: str, re_formula: str | None) -> Design:
    """Build a :class:`Design` from a long DataFrame and patsy formulas.

    Parameters
    ----------
    data : one row per observation; no missing values in the columns used
        (rows with gaps are an error, never dropped).
    formula : fixed effects, e.g. ``'y ~ week * hip + C(sex)'``.
    groups : the grouping column (clients).
    re_formula : random effects, e.g. ``'~week'``; None or ``'1'`` = random intercept.

    Raises
    ------
    ModelError : unknown column, bad formula or missing values.
    """
    if groups not in data.columns:
        raise ModelError(f"grouping column {groups!r} is not in the data")
    re_formula = "~1" if re_formula is None or re_formula.strip() in ("1", "~1") else re_formula
    fast_formula, categoricals = _bare_categoricals(data, formula)
    try:
        y, X = patsy.dmatrices(fast_formula, data, return_type="dataframe", NA_action=patsy.NAAction("raise"))
        Z = patsy.dmatrix(re_formula, data, return_type="dataframe", NA_action=patsy.NAAction("raise"))
    except (patsy.PatsyError, KeyError, ValueError, TypeError) as exc:
        raise ModelError(
            f"model {formula!r} (random effects {re_formula!r}) cannot be built from the data: {exc}"
        ) from None
    if y.shape[1] != 1:
        raise ModelError(f"model {formula!r}: the response must be one numeric column")
    if data[groups].isna().any():
        raise ModelError(f"grouping column {groups!r} has missing values")
    return from_arrays(
        X.to_numpy(),
        Z.to_numpy(),
        y.to_numpy(),
        data[groups].to_numpy(),
        fixed_names=[_c_name(name, categoricals) for name in X.columns],
        re_names=list(Z.columns),
    )


def _bare_categoricals(data: pd.DataFrame, formula: str) -> tuple[str, list[str]]:
    """``formula`` with ``C(col)`` written ``col`` for every pandas categorical column ``col``, and those columns.

    patsy codes a pandas categorical column the same either way (levels = its categories, first = reference,
    treatment contrasts), but inside ``C()`` it converts the values one by one in Python (0.6 s per 10^5
    rows); bare, it takes the categorical's integer codes. :func:`_c_name` restores the ``C(col)`` names.
    """
    cats: list[str] = []

    def bare(m: re.Match[str]) -> str:
        col = m.group(1)
        if col in data.columns and isinstance(data[col].dtype, pd.CategoricalDtype):
            cats.append(col)
            return col
        return m.group(0)

    return re.sub(r"(?<![\w.])C\(\s*(\w+)\s*\)", bare, formula), cats


def _c_name(name: str, categoricals: list[str]) -> str:
    """patsy's column name of a bare categorical term (``sex[T.M]``) as it names ``C(sex)`` (``C(sex)[T.M]``)."""
    for col in categoricals:
        name = re.sub(rf"(?<![\w.]){re.escape(col)}\[", f"C({col})[", name)
    return name


def independent_columns(d: Design, tol: float = 1e-7) -> list[int]:
    """Columns of X kept when dropping, in order, each one that is (numerically) a combination of earlier ones.

    Like lme4's ``chkRank.drop.cols``: the model is fitted without the aliased columns. A column is
    aliased when its residual after projecting on the kept columns has relative norm below ``tol``.
    """
    keep: list[int] = []
    for j in range(d.p):
        cols = keep + [j]
        sub = d.XtX[np.ix_(cols, cols)]
        scale = np.sqrt(np.diag(sub))
        if scale[-1] == 0:
            continue
        corr = sub / np.outer(scale, scale)
        if np.linalg.eigvalsh(corr).min() > tol:
            keep.append(j)
    return keep


def select_columns(d: Design, keep: list[int]) -> Design:
    """The same design with only the fixed-effects columns ``keep`` (rows, groups and Z unchanged)."""
    return Design(
        X=d.X[:, keep],
        Z=d.Z,
        y=d.y,
        group_codes=d.group_codes,
        order=d.order,
        group_labels=d.group_labels,
        fixed_names=[d.fixed_names[j] for j in keep],
        re_names=d.re_names,
        ZtZ=d.ZtZ,
        ZtX=d.ZtX[:, :, keep],
        Zty=d.Zty,
        n_per_group=d.n_per_group,
        XtX=d.XtX[np.ix_(keep, keep)],
        Xty=d.Xty[keep],
        yty=d.yty,
    )
