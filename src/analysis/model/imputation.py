"""Multiple imputation of the primary-week outcome, Rubin's rules and a delta-adjusted tipping point.

Clients of the primary model without an observation in the endpoint window
(:mod:`analysis.model.endpoint`) -- mostly courses that ended early -- have
their endpoint imputed, and so do blank ``sitting_hours`` (instead of the
primary model's missing-indicator), by chained equations:

- each variable with gaps is imputed by predictive mean matching (PMM) with
  proper Bayesian parameter draws: fit OLS on the observed cases, draw
  ``sigma^2 ~ RSS / chi2(n - p)`` and ``beta ~ N(beta_hat, sigma^2 (X'X)^-1)``,
  then take the observed value of one of the ``mi_pmm_donors`` observed cases
  whose predicted mean (at ``beta_hat``) is closest to the missing case's
  predicted mean (at the drawn ``beta``). PMM keeps imputed pain within the
  scale and on its integer grid.
- predictors of the endpoint: group, baseline outcome, the last value observed
  before the window opens and its week, and the covariates; predictors of a
  numeric covariate: the same plus the endpoint.
- ``mi_iterations`` rounds of chained equations per imputed data set
  (one round suffices when only the endpoint has gaps).

Each completed data set is analysed by ANCOVA (change at the endpoint on
group, baseline and covariates, OLS) and the results pooled by Rubin's rules
with the Barnard-Rubin small-sample degrees of freedom.

The *tipping point* analysis repeats the pooling after making every imputed
hip-focused endpoint ``delta`` points worse (params ``tipping_deltas``), i.e.
supposing the hip-focused clients who stopped coming did worse than similar
clients who stayed (missing not at random). It reports the smallest delta at
which the conclusion changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from analysis.contract import Measure
from analysis.model.endpoint import client_endpoint, raw_column, usable_terms
from analysis.model.entries import NotEstimable
from analysis.model.prepare import PrimaryData
from analysis.params_schema import ModelParams

TIPPING_COLUMNS = ["delta", "estimate", "ci_low", "ci_high", "p_value"]


# --------------------------------------------------------------------------- Rubin's rules


def rubin(
    estimates: npt.ArrayLike, variances: npt.ArrayLike, df_complete: float | None = None, alpha: float = 0.05
) -> dict[str, Any]:
    """Pool m estimates by Rubin's rules.

    Parameters
    ----------
    estimates, variances : per-imputation estimate and its squared SE.
    df_complete : complete-data residual df (Barnard & Rubin 1999); None = large.
    alpha : 1 - confidence level.

    Returns
    -------
    dict with ``estimate`` (mean), ``within`` (mean variance U), ``between``
    (B), ``total_variance`` (T = U + (1 + 1/m) B), ``se``, ``riv`` (relative
    increase in variance r), ``lambda`` ((1 + 1/m) B / T), ``df_classic``
    ((m - 1) / lambda^2), ``df`` (Barnard-Rubin adjusted), ``fmi`` (fraction of
    missing information, (r + 2/(df + 3)) / (1 + r)), ``ci_low``, ``ci_high``,
    ``p_value`` (t with ``df``), ``m``.

    Examples
    --------
    >>> round(rubin([1, 2, 3], [1, 1, 1])["total_variance"], 4)
    2.3333
    """
    q, u = np.asarray(estimates, float), np.asarray(variances, float)
    m = len(q)
    if m < 2 or len(u) != m:
        raise ValueError("Rubin's rules need at least 2 imputations with one variance each")
    qbar, ubar = float(q.mean()), float(u.mean())
    b = float(q.var(ddof=1))
    t = ubar + (1 + 1 / m) * b
    riv = (1 + 1 / m) * b / ubar if ubar > 0 else float("inf")
    lam = (1 + 1 / m) * b / t if t > 0 else 0.0
    df_classic = (m - 1) / lam**2 if lam > 0 else float("inf")
    if df_complete is None or not np.isfinite(df_complete):
        df = df_classic
    else:
        df_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
        df = df_obs if not np.isfinite(df_classic) else df_classic * df_obs / (df_classic + df_obs)
    fmi = (riv + 2 / (df + 3)) / (1 + riv) if np.isfinite(df) else riv / (1 + riv)
    se = float(np.sqrt(t))
    crit = stats.t.ppf(1 - alpha / 2, df) if np.isfinite(df) else stats.norm.ppf(1 - alpha / 2)
    p = (
        2 * (stats.t.sf(abs(qbar / se), df) if np.isfinite(df) else stats.norm.sf(abs(qbar / se)))
        if se > 0
        else float("nan")
    )
    return {
        "estimate": qbar,
        "within": ubar,
        "between": b,
        "total_variance": t,
        "se": se,
        "riv": float(riv),
        "lambda": float(lam),
        "df_classic": float(df_classic),
        "df": float(df),
        "fmi": float(fmi),
        "ci_low": float(qbar - crit * se),
        "ci_high": float(qbar + crit * se),
        "p_value": float(p),
        "m": m,
    }


# --------------------------------------------------------------------------- imputation


def pmm_draw(
    x_obs: np.ndarray, y_obs: np.ndarray, x_mis: np.ndarray, rng: np.random.Generator, donors: int
) -> np.ndarray:
    """Predictive mean matching with a Bayesian draw of the regression parameters (type-1 matching)."""
    n, p = x_obs.shape
    # normal equations on the small p x p cross-product: SVDs of the n x p design are needlessly slow here
    xtx = x_obs.T @ x_obs
    v = np.linalg.pinv(xtx, hermitian=True)
    df = n - np.linalg.matrix_rank(xtx, hermitian=True)
    if df < 2:
        raise NotEstimable(f"too few observed cases ({n}) for an imputation model with {p} parameters")
    beta_hat = v @ (x_obs.T @ y_obs)
    rss = float(np.sum((y_obs - x_obs @ beta_hat) ** 2))
    sigma2 = rss / rng.chisquare(df)
    # the symmetric square root Q sqrt(L) Q' of V: works for a rank-deficient (collinear dummies) design
    # too, and unlike Q sqrt(L) it is unique -- the signs of eigenvectors are arbitrary and differ between
    # BLAS/LAPACK kernels, which would change every draw (and the imputations) from one machine to another
    evals, evecs = np.linalg.eigh(v)
    root = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
    beta = beta_hat + np.sqrt(sigma2) * root @ rng.standard_normal(p)
    pred_obs, pred_mis = x_obs @ beta_hat, x_mis @ beta
    k = min(donors, n)
    # The k nearest observed predictions to each missing one lie within k places of its insertion
    # point in the sorted observed predictions: O((n_mis + n) log n) time and O(n_mis k) memory, not an
    # n_mis x n distance matrix (3 GB at 50,000 clients).
    order = np.argsort(pred_obs, kind="stable")
    sorted_obs = pred_obs[order]
    at = np.searchsorted(sorted_obs, pred_mis)
    window = np.clip(at[:, None] + np.arange(-k, k)[None, :], 0, n - 1)
    # tiny random jitter breaks ties between equal predictions at random, not by row order
    dist = np.abs(sorted_obs[window] - pred_mis[:, None]) + rng.uniform(0, 1e-9, window.shape)
    dist[:, 1:][window[:, 1:] == window[:, :-1]] = np.inf  # a place repeated by the clipping counts once
    nearest = np.take_along_axis(window, np.argpartition(dist, k - 1, axis=1)[:, :k], axis=1)
    pick = order[nearest[np.arange(len(pred_mis)), rng.integers(0, k, len(pred_mis))]]
    drawn: np.ndarray = y_obs[pick]
    return drawn


@dataclass
class Imputations:
    """Completed client-level data sets.

    ``frame`` holds one row per client (endpoint frame); ``y`` and ``numeric``
    hold the completed endpoint and numeric covariates per imputation
    (arrays m x n); ``missing_y`` marks imputed endpoints.
    """

    frame: pd.DataFrame
    y: np.ndarray
    numeric: dict[str, np.ndarray]
    missing_y: np.ndarray
    numeric_raw: dict[str, np.ndarray]
    dummies: np.ndarray
    dummy_names: list[str]
    notes: list[str]


def impute(pdata: PrimaryData, cfg: ModelParams) -> Imputations:
    """Impute missing endpoints (and gaps in numeric covariates) ``n_imputations`` times, seeded."""
    ep = client_endpoint(pdata.data, cfg)
    m = cfg.n_imputations
    rng = np.random.default_rng(cfg.seed)
    donors, rounds = cfg.mi_pmm_donors, cfg.mi_iterations
    ep, covs, notes = usable_terms(ep, [t for t in pdata.covariates if not t.endswith("_missing")])
    numeric_names = [t for t in covs if not t.startswith("C(")]
    categorical = [raw_column(t) for t in covs if t.startswith("C(")]

    numeric: dict[str, np.ndarray] = {}
    for name in numeric_names:
        values = ep[name].to_numpy(float).copy()
        indicator = f"{name}_missing"
        if indicator in ep:
            values[ep[indicator].to_numpy() == 1] = np.nan
        numeric[name] = values
    dummies = (
        pd.get_dummies(ep[categorical].astype(str), drop_first=True, dtype=float)
        if categorical
        else pd.DataFrame(index=ep.index)
    )
    base = np.column_stack(
        [
            np.ones(len(ep)),
            ep["hip"].to_numpy(float),
            ep["baseline_y"].to_numpy(float),
            ep["last_y"].to_numpy(float),
            ep["last_week"].to_numpy(float),
            dummies.to_numpy(),
        ]
    )
    y0 = ep["y_end"].to_numpy(float)
    miss_y = np.isnan(y0)
    n_obs = int((~miss_y).sum())
    if n_obs < 10 or ep.loc[~miss_y, "hip"].nunique() < 2:
        raise NotEstimable(f"only {n_obs} clients have an endpoint observation (need 10, in both groups)")
    gaps = {k: np.isnan(v) for k, v in numeric.items() if np.isnan(v).any()}
    for k, g in gaps.items():
        notes.append(f"{k}: {int(g.sum())} blank value(s) imputed (instead of the primary model's missing-indicator).")
    rounds = rounds if gaps else 1

    ys = np.empty((m, len(ep)))
    nums = {k: np.empty((m, len(ep))) for k in numeric}
    for j in range(m):
        y = y0.copy()
        cur = {k: v.copy() for k, v in numeric.items()}
        # start from random observed values, then cycle through the chained equations
        for k, g in gaps.items():
            cur[k][g] = rng.choice(cur[k][~g], size=int(g.sum()))
        y[miss_y] = rng.choice(y0[~miss_y], size=int(miss_y.sum()))
        for _ in range(rounds):
            for k, g in gaps.items():
                others = [cur[o] for o in numeric if o != k]
                x = np.column_stack([base, y, *others]) if others else np.column_stack([base, y])
                cur[k][g] = pmm_draw(x[~g], cur[k][~g], x[g], rng, donors)
            if miss_y.any():
                x = np.column_stack([base, *cur.values()]) if cur else base
                y[miss_y] = pmm_draw(x[~miss_y], y0[~miss_y], x[miss_y], rng, donors)
        ys[j] = y
        for k in numeric:
            nums[k][j] = cur[k]
    return Imputations(
        frame=ep,
        y=ys,
        numeric=nums,
        missing_y=miss_y,
        numeric_raw=numeric,
        dummies=dummies.to_numpy(),
        dummy_names=list(dummies.columns),
        notes=notes,
    )


def _ancova(
    change: np.ndarray, hip: np.ndarray, baseline: np.ndarray, numeric: list[np.ndarray], dummies: np.ndarray
) -> tuple[float, float, int]:
    """OLS of change on hip + baseline + covariates: (hip coefficient, its variance, residual df)."""
    x = np.column_stack([np.ones(len(change)), hip, baseline, *numeric, dummies])
    xtx = x.T @ x
    inv = np.linalg.pinv(xtx, hermitian=True)
    beta = inv @ (x.T @ change)
    df = len(change) - np.linalg.matrix_rank(xtx, hermitian=True)
    if df < 1:
        raise NotEstimable("the ANCOVA has no residual degrees of freedom")
    s2 = float(np.sum((change - x @ beta) ** 2) / df)
    v = inv * s2
    return float(beta[1]), float(v[1, 1]), int(df)


def pooled(imp: Imputations, delta: float, measure: Measure, alpha: float) -> dict[str, Any]:
    """Rubin-pooled ANCOVA estimate with imputed hip-focused endpoints made ``delta`` points worse."""
    ep = imp.frame
    hip = ep["hip"].to_numpy(float)
    base = ep["baseline_y"].to_numpy(float)
    worse = 1.0 if measure.lower_is_better else -1.0
    shift = np.where(imp.missing_y & (hip == 1), worse * delta, 0.0)
    est, var, dfs = [], [], []
    for j in range(imp.y.shape[0]):
        b, v, df = _ancova(imp.y[j] + shift - base, hip, base, [a[j] for a in imp.numeric.values()], imp.dummies)
        est.append(b)
        var.append(v)
        dfs.append(df)
    return rubin(est, var, df_complete=float(dfs[0]), alpha=alpha)


def mi_analysis(imp: Imputations, cfg: ModelParams, measure: Measure) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The MI estimate (delta 0) with the complete-case ANCOVA beside it."""
    alpha = cfg.alpha
    ep = imp.frame
    res = pooled(imp, 0.0, measure, alpha)
    hip = ep["hip"].to_numpy(float)
    # complete cases: endpoint observed and every numeric covariate recorded (no filled values)
    cc_rows = ~imp.missing_y
    for raw in imp.numeric_raw.values():
        cc_rows &= ~np.isnan(raw)
    b, v, df = _ancova(
        ep["change"].to_numpy(float)[cc_rows],
        hip[cc_rows],
        ep["baseline_y"].to_numpy(float)[cc_rows],
        [raw[cc_rows] for raw in imp.numeric_raw.values()],
        imp.dummies[cc_rows],
    )
    half = float(stats.t.ppf(1 - alpha / 2, df) * np.sqrt(v))
    cc = {
        "estimate": b,
        "se": float(np.sqrt(v)),
        "ci_low": b - half,
        "ci_high": b + half,
        "n_clients": int(cc_rows.sum()),
    }
    n_mis = {
        "hip_focused": int((imp.missing_y & (hip == 1)).sum()),
        "comparator": int((imp.missing_y & (hip == 0)).sum()),
    }
    return {
        **res,
        "n_clients": int(len(ep)),
        "n_imputed": n_mis,
        "n_imputations": int(imp.y.shape[0]),
        "complete_case": cc,
        "notes": imp.notes
        + [
            (
                "assumes the endpoint is missing at random given group, baseline, covariates and the last value "
                "observed before the window (and its week); see tipping_point for departures from this."
            ),
            "Rubin's rules; degrees of freedom by Barnard & Rubin (1999); df_classic is Rubin's (1987).",
        ],
    }, {}


def tipping_analysis(
    imp: Imputations, cfg: ModelParams, measure: Measure
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Delta-adjusted MI over params ``tipping_deltas``; the smallest delta that changes the conclusion.

    Returns
    -------
    (numbers, {"tipping": DataFrame with :data:`TIPPING_COLUMNS`})
    """
    alpha = cfg.alpha
    deltas = sorted(float(d) for d in cfg.tipping_deltas)
    rows = [
        {"delta": d, **{k: pooled(imp, d, measure, alpha)[k] for k in ("estimate", "ci_low", "ci_high", "p_value")}}
        for d in deltas
    ]
    table = pd.DataFrame(rows, columns=TIPPING_COLUMNS)
    at0 = pooled(imp, 0.0, measure, alpha)
    favours_hip = at0["ci_high"] < 0 if measure.lower_is_better else at0["ci_low"] > 0
    n_hip_imputed = int((imp.missing_y & (imp.frame["hip"].to_numpy() == 1)).sum())
    out: dict[str, Any] = {
        "deltas": deltas,
        "n_hip_imputed": n_hip_imputed,
        "direction": f"imputed hip-focused endpoints made delta {measure.unit} worse",
    }
    if n_hip_imputed == 0:
        out.update(tipping_delta=None, conclusion="no hip-focused endpoint was imputed: nothing to tip")
    elif not favours_hip:
        out.update(
            tipping_delta=None,
            conclusion=("even with no shift the CI already includes no benefit of hip focus: no conclusion to tip"),
        )
    else:
        # the conclusion "hip focus better" changes once the CI reaches 0
        includes = table[(table["ci_high"] >= 0)] if measure.lower_is_better else table[(table["ci_low"] <= 0)]
        if includes.empty:
            out.update(tipping_delta=None, conclusion=f"not reached within the range (up to {max(deltas):g})")
        else:
            d = float(includes["delta"].min())
            out.update(tipping_delta=d, conclusion=f"the CI includes 0 from delta {d:g} on")
    out["notes"] = [
        (
            "the same imputations are shifted for every delta, so the curve is smooth in delta; "
            "shifted values are not clipped to the scale."
        )
    ]
    return out, {"tipping": table}
