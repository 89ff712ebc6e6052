"""Checks of the primary model's specification: its linear time trend and its covariate adjustment.

- :func:`time_trend_analysis` (pre-specified sensitivity analysis): the primary model with a flexible,
  piecewise-linear time trend per group instead of one straight line. ``week`` is joined by one hinge
  column per knot, ``week_after<i> = max(week - knot_i, 0)`` (params ``model.time_trend_knots``; default one
  knot at the primary week), each with its interaction with ``hip``::

      y ~ week * hip + week_after1 * hip + ... + <covariates>,   random intercept and slope on week per client

  The difference in change at the primary week is ``pw x coef(week:hip) + sum_i max(pw - knot_i, 0) x
  coef(week_after<i>:hip)`` (with the default knot the hinge terms are 0 at the primary week, so the
  estimate rests on the first segment only). Whether the straight line is adequate is judged by a
  likelihood-ratio test of the ML fits of the linear and the piecewise models (2 df per knot) and by
  setting the two estimates side by side.
- :func:`unadjusted_analysis`: the primary mixed model without covariates (``y ~ week * hip``), so the
  paper can show the unadjusted beside the adjusted estimate.

Both are fitted by the project's engine (:func:`analysis.model.fit.fit_mixed_with_fallback`) with the
primary model's random effects and df method; tests/reference holds the piecewise design fitted by lme4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.model.entries import FitFailed, NotEstimable
from analysis.model.fit import MixedFit, fit_mixed, fit_mixed_with_fallback, fit_options, linear_contrast
from analysis.model.prepare import PrimaryData
from analysis.model.primary import GROUPS, RE_FORMULA, SLOPE_TERM, primary_formula
from analysis.params_schema import ModelParams

#: observations after a knot needed in each group for the segment after it to be estimable
MIN_AFTER_KNOT = 10


def knots_of(cfg: ModelParams) -> list[float]:
    """The knots of the piecewise time trend: params ``model.time_trend_knots``, default the primary week."""
    return sorted(float(k) for k in (cfg.time_trend_knots or [cfg.primary_week]))


def hinge_name(i: int) -> str:
    """The column of the ``i``-th knot (0-based): ``week_after1``, ``week_after2``, ..."""
    return f"week_after{i + 1}"


def piecewise_basis(week: pd.Series, knots: Sequence[float]) -> pd.DataFrame:
    """The hinge columns ``max(week - knot, 0)``, one per knot, named by :func:`hinge_name`.

    Examples
    --------
    >>> piecewise_basis(pd.Series([0.0, 6.0, 9.5]), [6.0])["week_after1"].tolist()
    [0.0, 0.0, 3.5]
    """
    w = week.astype(float)
    return pd.DataFrame({hinge_name(i): np.maximum(w - float(k), 0.0) for i, k in enumerate(knots)}, index=week.index)


def piecewise_formula(pdata: PrimaryData, knots: Sequence[float]) -> str:
    """The primary formula with a hinge term (and its interaction with ``hip``) per knot."""
    hinges = [f"{hinge_name(i)} * hip" for i in range(len(knots))]
    return " + ".join(["y ~ week * hip", *hinges, *pdata.covariates])


def difference_weights(knots: Sequence[float], week: float) -> dict[str, float]:
    """Contrast weights of the hip-minus-knee difference in change at ``week`` under the piecewise trend."""
    w = {SLOPE_TERM: float(week)}
    for i, k in enumerate(knots):
        if week > k:
            w[f"{hinge_name(i)}:hip"] = float(week - k)
    return w


def likelihood_ratio(deviance_reduced: float, deviance_full: float, df: int) -> dict[str, float]:
    """Likelihood-ratio test of nested ML fits: statistic ``dev_reduced - dev_full`` against chi-square(df)."""
    stat = max(float(deviance_reduced - deviance_full), 0.0)
    return {"statistic": stat, "df": float(df), "p_value": float(stats.chi2.sf(stat, df))}


def _ml_pair(
    data: pd.DataFrame, linear: str, piecewise: str, re_formula: str | None, cfg: ModelParams
) -> tuple[MixedFit, MixedFit]:
    opts = fit_options(cfg)
    return (
        fit_mixed(data, linear, GROUPS, re_formula, reml=False, **opts),
        fit_mixed(data, piecewise, GROUPS, re_formula, reml=False, **opts),
    )


def time_trend_analysis(pdata: PrimaryData, cfg: ModelParams) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Is the straight-line time trend of the primary model adequate? Piecewise-linear trend per group.

    Returns
    -------
    (numbers, {}) ; numbers: ``estimate``, ``se``, ``df``, ``ci_low``, ``ci_high``, ``p_value``,
    ``df_method`` (difference in change at the primary week under the piecewise trend), ``knots``,
    ``formula``, ``re_formula``, ``fit_status``, ``likelihood_ratio`` {statistic, df, p_value,
    deviance_linear, deviance_piecewise} (ML fits), ``slope_change`` {term: contrast} (change of the
    hip-minus-knee slope at each knot), ``linear_adequate`` (LR test p >= alpha), ``notes``.
    """
    knots = knots_of(cfg)
    data = pdata.data
    pw = cfg.primary_week
    for k in knots:
        after = data.loc[data["week"] > k].groupby("hip").size().reindex([0, 1], fill_value=0)
        if int(after.min()) < MIN_AFTER_KNOT:
            raise NotEstimable(f"fewer than {MIN_AFTER_KNOT} observations after week {k:g} in a group")
    data = pd.concat([data, piecewise_basis(data["week"], knots)], axis=1)
    formula = piecewise_formula(pdata, knots)
    fit = fit_mixed_with_fallback(data, formula, GROUPS, RE_FORMULA, reml=True, **fit_options(cfg))
    if not fit.ok:
        raise FitFailed(f"piecewise time-trend model: {fit.reason}")
    needed = {SLOPE_TERM, *(f"{hinge_name(i)}:hip" for i in range(len(knots)))}
    if needed & set(fit.dropped):
        raise NotEstimable(f"the terms {', '.join(sorted(needed & set(fit.dropped)))} are not estimable in these data")
    headline = linear_contrast(fit, difference_weights(knots, pw), cfg.alpha)
    re_formula = RE_FORMULA if fit.status == "ok" else None
    ml_linear, ml_piecewise = _ml_pair(data, primary_formula(pdata), formula, re_formula, cfg)
    notes = [
        (
            f"hinge columns max(week - knot, 0) at weeks {', '.join(f'{k:g}' for k in knots)}; the estimate is the "
            f"hip-minus-knee difference in change at week {pw:g} under this trend, to set beside the headline."
        )
    ]
    if fit.status == "fallback":
        notes.append(f"FALLBACK: {fit.reason}.")
    lrt: dict[str, Any] | None = None
    if ml_linear.ok and ml_piecewise.ok:
        d0, d1 = float(ml_linear.accepted.deviance), float(ml_piecewise.accepted.deviance)
        lrt = likelihood_ratio(d0, d1, 2 * len(knots)) | {"deviance_linear": d0, "deviance_piecewise": d1}
    else:
        notes.append("the ML fits for the likelihood-ratio test were not both trustworthy: no test reported.")
    return {
        **{k: headline[k] for k in ("estimate", "se", "df", "ci_low", "ci_high", "p_value", "df_method")},
        "knots": knots,
        "formula": formula,
        "re_formula": re_formula,
        "fit_status": fit.status,
        "likelihood_ratio": lrt,
        "slope_change": {
            f"{hinge_name(i)}:hip": linear_contrast(fit, {f"{hinge_name(i)}:hip": 1.0}, cfg.alpha)
            for i in range(len(knots))
        },
        "linear_adequate": None if lrt is None else bool(lrt["p_value"] >= cfg.alpha),
        "notes": notes,
    }, {}


def unadjusted_analysis(pdata: PrimaryData, cfg: ModelParams) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The primary mixed model without covariates: the unadjusted difference in change at the primary week.

    Returns
    -------
    (numbers, {}) ; numbers: ``estimate``, ``se``, ``df``, ``ci_low``, ``ci_high``, ``p_value``,
    ``df_method``, ``slope_difference`` (contrast), ``formula``, ``re_formula``, ``fit_status``.
    """
    formula = "y ~ week * hip"
    fit = fit_mixed_with_fallback(pdata.data, formula, GROUPS, RE_FORMULA, reml=True, **fit_options(cfg))
    if not fit.ok:
        raise FitFailed(f"unadjusted model: {fit.reason}")
    headline = linear_contrast(fit, {SLOPE_TERM: cfg.primary_week}, cfg.alpha)
    notes = [] if fit.status == "ok" else [f"FALLBACK: {fit.reason}."]
    return {
        **{k: headline[k] for k in ("estimate", "se", "df", "ci_low", "ci_high", "p_value", "df_method")},
        "slope_difference": linear_contrast(fit, {SLOPE_TERM: 1.0}, cfg.alpha),
        "formula": formula,
        "re_formula": RE_FORMULA if fit.status == "ok" else None,
        "fit_status": fit.status,
        "notes": notes,
    }, {}
