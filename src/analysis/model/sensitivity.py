"""Sensitivity analyses of the primary comparison: GEE, IPTW, E-value, chronicity moderation.

Every estimate here is the *difference in change from baseline at the primary
week*, hip-focused minus knee-focused (negative = hip-focused clients'
pain fell more), the same quantity as the primary analysis, obtained under
different modelling assumptions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf

from analysis.model.endpoint import client_endpoint, collapse_sparse_levels, raw_column, rhs, usable_terms
from analysis.model.entries import FitFailed, NotEstimable, fit_checked, term_name
from analysis.model.fit import MixedFit, fit_mixed_with_fallback, fit_options, linear_contrast, mixed_summary, wald
from analysis.model.prepare import PrimaryData
from analysis.params_schema import ModelParams

BALANCE_COLUMNS = ["covariate", "level", "smd_unweighted", "smd_weighted"]
CHRONICITY_COLUMNS = ["symptom_weeks", "effect", "ci_low", "ci_high", "within_data"]


# --------------------------------------------------------------------------- GEE


def gee_analysis(pdata: PrimaryData, cfg: ModelParams) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """GEE (Gaussian, exchangeable working correlation, robust sandwich SEs) of y ~ week*hip + covariates.

    Returns
    -------
    (numbers, {}) ; numbers has ``estimate``, ``se``, ``ci_low``, ``ci_high``,
    ``p_value`` for the difference in change at the primary week, the slope
    difference and the working correlation.
    """
    data = pdata.data
    pw, alpha = cfg.primary_week, cfg.alpha
    if data["client_id"].nunique() < 10 or data["hip"].nunique() < 2:
        raise NotEstimable("GEE needs at least 10 clients in both groups together, with both groups present")
    formula = "y ~ " + rhs("week * hip", pdata.covariates)
    model = smf.gee(
        formula, groups="client_id", data=data, cov_struct=sm.cov_struct.Exchangeable(), family=sm.families.Gaussian()
    )
    res = fit_checked("GEE", lambda: model.fit(maxiter=100))
    term = term_name(res.params.index, "week", "hip")
    b, se = float(res.params[term]), float(res.bse[term])
    out = wald(pw * b, pw * se, alpha)
    out.update(
        slope_difference=wald(b, se, alpha),
        working_correlation=float(model.cov_struct.dep_params),
        n_clients=int(data["client_id"].nunique()),
        n_obs=int(len(data)),
        formula=formula,
        notes=[
            (
                "robust (sandwich) standard errors: valid if the mean model is right even when the exchangeable "
                "working correlation is not; GEE assumes missing visits are missing completely at random "
                "(stronger than the mixed model's missing at random)."
            )
        ],
    )
    return out, {}


# --------------------------------------------------------------------------- IPTW


def smd(x: pd.Series, treated: pd.Series, w: pd.Series | None = None) -> float:
    """Standardised mean difference, treated minus control, over the pooled (weighted) SD.

    With weights, means and variances are weighted (Austin & Stuart 2015).
    """
    w = pd.Series(1.0, index=x.index) if w is None else w
    x, t = x.astype(float), treated.astype(bool)
    m, v = [], []
    for g in (t, ~t):
        wg, xg = w[g].to_numpy(float), x[g].to_numpy(float)
        mean = np.average(xg, weights=wg)
        var = np.average((xg - mean) ** 2, weights=wg) * (wg.sum() ** 2 / (wg.sum() ** 2 - (wg**2).sum()))
        m.append(mean)
        v.append(var)
    pooled = np.sqrt((v[0] + v[1]) / 2)
    if pooled == 0:
        return 0.0 if m[0] == m[1] else float("inf")
    return float((m[0] - m[1]) / pooled)


def balance_table(df: pd.DataFrame, columns: list[str], w: pd.Series) -> pd.DataFrame:
    """SMD of each covariate (each level of a categorical) before and after weighting.

    Returns
    -------
    DataFrame with :data:`BALANCE_COLUMNS` (``level`` blank for numeric covariates).
    """
    rows = []
    for col in columns:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype):
            rows.append(
                {
                    "covariate": col,
                    "level": "",
                    "smd_unweighted": smd(s, df["hip"]),
                    "smd_weighted": smd(s, df["hip"], w),
                }
            )
            continue
        levels = list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype) else sorted(s.astype(str).unique())
        for level in levels:
            ind = (s.astype(str) == str(level)).astype(float)
            rows.append(
                {
                    "covariate": col,
                    "level": str(level),
                    "smd_unweighted": smd(ind, df["hip"]),
                    "smd_weighted": smd(ind, df["hip"], w),
                }
            )
    return pd.DataFrame(rows, columns=BALANCE_COLUMNS)


def stabilised_weights(hip: pd.Series, ps: pd.Series, trim: tuple[float, float]) -> pd.Series:
    """Stabilised inverse-probability weights, P(group)/P(group | covariates), trimmed at weight quantiles."""
    p = float(hip.mean())
    w = np.where(hip == 1, p / ps, (1 - p) / (1 - ps))
    lo, hi = np.quantile(w, trim)
    return pd.Series(np.clip(w, lo, hi), index=hip.index)


def iptw_analysis(pdata: PrimaryData, cfg: ModelParams) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Inverse probability of treatment weighting on the per-client change at the primary week.

    Propensity: logistic regression of hip on the baseline covariates and the
    baseline outcome (clients with an endpoint). Weights: stabilised, trimmed
    at the ``iptw_trim`` quantiles. Outcome: weighted least squares of change on
    hip with robust (HC1; one row per client, so cluster-robust) SEs.

    Returns
    -------
    (numbers, {"balance": DataFrame with :data:`BALANCE_COLUMNS`})
    """
    alpha = cfg.alpha
    ep = client_endpoint(pdata.data, cfg)
    ep = ep[ep["observed"] == 1].reset_index(drop=True)
    n1, n0 = int((ep["hip"] == 1).sum()), int((ep["hip"] == 0).sum())
    if min(n1, n0) < 5:
        raise NotEstimable(
            f"too few clients with an endpoint for a propensity model (hip-focused {n1}, comparator {n0}; need 5 each)"
        )
    df, notes = collapse_sparse_levels(ep, pdata.covariates, cfg.min_level_n)
    df, covs, const_notes = usable_terms(df, pdata.covariates)
    notes += const_notes
    ps_formula = "hip ~ " + rhs("baseline_y", covs)
    ps_res = fit_checked(
        "propensity model", lambda: smf.logit(ps_formula, data=df).fit(method="newton", maxiter=100, disp=False)
    )
    ps = pd.Series(np.asarray(ps_res.predict(df)), index=df.index)
    w = stabilised_weights(df["hip"], ps, cfg.iptw_trim)

    balance_cols = ["baseline_y"] + [raw_column(t) for t in pdata.covariates]
    balance = balance_table(ep, [c for c in balance_cols if c in ep], w)
    target = cfg.smd_target
    max_before, max_after = float(balance["smd_unweighted"].abs().max()), float(balance["smd_weighted"].abs().max())

    wls = fit_checked("weighted outcome model", lambda: smf.wls("change ~ hip", data=df, weights=w).fit(cov_type="HC1"))
    est = wald(float(wls.params["hip"]), float(wls.bse["hip"]), alpha)
    dr_formula = "change ~ " + rhs("hip", "baseline_y", covs)
    dr = fit_checked(
        "weighted, covariate-adjusted outcome model",
        lambda: smf.wls(dr_formula, data=df, weights=w).fit(cov_type="HC1"),
    )

    def ess(g: int) -> float:
        wg = w[df["hip"] == g]
        return float(wg.sum() ** 2 / (wg**2).sum())

    est.update(
        method=(
            "stabilised IPTW (logistic propensity on baseline covariates and baseline outcome, weights trimmed "
            f"at quantiles {cfg.iptw_trim}); weighted least squares of the per-client change at the endpoint "
            "on group with HC1 robust SEs (one row per client, so cluster-robust)"
        ),
        doubly_robust=wald(float(dr.params["hip"]), float(dr.bse["hip"]), alpha) | {"formula": dr_formula},
        propensity_formula=ps_formula,
        propensity_range={
            "hip_focused": [float(ps[df["hip"] == 1].min()), float(ps[df["hip"] == 1].max())],
            "comparator": [float(ps[df["hip"] == 0].min()), float(ps[df["hip"] == 0].max())],
        },
        weight_range=[float(w.min()), float(w.max())],
        effective_n={"hip_focused": ess(1), "comparator": ess(0)},
        n_hip_focused=n1,
        n_comparator=n0,
        max_abs_smd_unweighted=max_before,
        max_abs_smd_weighted=max_after,
        smd_target=target,
        balanced=bool(max_after < target),
        notes=notes
        + [
            "robust SEs treat the weights as known, which is usually conservative for this estimand.",
            "complete cases: clients without an endpoint observation are not included.",
            "IPTW balances only the measured covariates; see e_value for unmeasured confounding.",
        ]
        + (
            []
            if max_after < target
            else [f"largest weighted |SMD| {max_after:.2f} is above the target {target:g}: some imbalance remains."]
        ),
    )
    return est, {"balance": balance}


# --------------------------------------------------------------------------- E-value


def e_value_rr(rr: float) -> float:
    """E-value of a risk ratio (VanderWeele & Ding 2017): RR + sqrt(RR * (RR - 1)), with RR<1 inverted."""
    if not np.isfinite(rr) or rr <= 0:
        raise ValueError("risk ratio must be positive and finite")
    rr = 1.0 / rr if rr < 1 else rr
    return float(rr + np.sqrt(rr * (rr - 1.0)))


def e_value_difference(estimate: float, ci_low: float, ci_high: float, sd: float) -> dict[str, Any]:
    """E-value of a mean difference via the standardised difference d = estimate / sd and RR ~ exp(0.91 d).

    Returns
    -------
    dict with ``d``, ``rr`` (approximate), ``e_value`` (point), ``e_value_ci``
    (for the CI limit closer to the null; 1 if the CI includes 0).
    """
    if not (np.isfinite(sd) and sd > 0):
        raise NotEstimable("the outcome SD is not positive; no standardised difference")
    d = estimate / sd
    rr = float(np.exp(0.91 * d))
    if ci_low <= 0 <= ci_high:
        e_ci = 1.0
    else:
        near = ci_low if abs(ci_low) < abs(ci_high) else ci_high
        e_ci = e_value_rr(float(np.exp(0.91 * near / sd)))
    return {"d": float(d), "rr": rr, "e_value": e_value_rr(rr), "e_value_ci": e_ci}


def e_value_analysis(
    pdata: PrimaryData, primary_fit: MixedFit | None, cfg: ModelParams
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """E-value of the primary estimate (difference in change at the primary week)."""
    if primary_fit is None or not primary_fit.ok:
        raise NotEstimable(
            "the primary model has no trustworthy fit: "
            + (primary_fit.reason if primary_fit is not None else "not fitted")
        )
    pw, alpha = cfg.primary_week, cfg.alpha
    term = term_name(primary_fit.accepted.fe_params.index, "week", "hip")
    primary = linear_contrast(primary_fit, {term: pw}, alpha)
    baseline = pdata.data.drop_duplicates("client_id")["baseline_y"]
    sd = float(baseline.std(ddof=1))
    ev = e_value_difference(primary["estimate"], primary["ci_low"], primary["ci_high"], sd)
    return {
        **ev,
        "primary_estimate": primary["estimate"],
        "primary_ci_low": primary["ci_low"],
        "primary_ci_high": primary["ci_high"],
        "sd": sd,
        "sd_source": "SD of the baseline outcome across clients",
        "notes": [
            (
                "E-value: the minimum strength of association (risk-ratio scale) an unmeasured confounder would need "
                "with both the group and the outcome, beyond the measured covariates, to explain away the estimate "
                "(VanderWeele & Ding 2017, Ann Intern Med 167:268-74). The mean difference is converted with "
                "d = estimate / SD(baseline outcome) and RR ~ exp(0.91 d), an approximation."
            ),
        ],
    }, {}


# --------------------------------------------------------------------------- chronicity


def chronicity_grid(cfg: ModelParams) -> np.ndarray:
    """Symptom durations (weeks) for the effect curve: log-spaced, params ``chronicity_grid``."""
    g = cfg.chronicity_grid
    return np.unique(np.round(np.geomspace(g.from_, g.to, g.points), 1))


def chronicity_analysis(pdata: PrimaryData, cfg: ModelParams) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Does the hip effect depend on symptom duration? Three-way week x hip x ln(symptom_weeks + 1) LMM.

    Returns
    -------
    (numbers, {"chronicity": DataFrame with :data:`CHRONICITY_COLUMNS`}) ;
    ``effect`` is the difference in change at the primary week at that duration.
    """
    data = pdata.data
    pw, alpha = cfg.primary_week, cfg.alpha
    if data["log_symptom_weeks"].nunique() < 3:
        raise NotEstimable("symptom duration takes fewer than 3 distinct values")
    covs = [c for c in pdata.covariates if c != "log_symptom_weeks"]
    formula = "y ~ " + rhs("week * hip * log_symptom_weeks", covs)
    fit = fit_mixed_with_fallback(data, formula, "client_id", "~week", **fit_options(cfg))
    if not fit.ok:
        raise FitFailed(f"chronicity model: {fit.reason}")
    names = fit.accepted.fe_params.index
    wh, whl = term_name(names, "week", "hip"), term_name(names, "week", "hip", "log_symptom_weeks")

    def effect(sw: float) -> dict[str, Any]:
        return linear_contrast(fit, {wh: pw, whl: pw * float(np.log(sw + 1.0))}, alpha)

    at = {str(int(s)) if float(s).is_integer() else str(s): effect(float(s)) for s in cfg.chronicity_weeks}
    lo, hi = float(pdata.data["symptom_weeks"].min()), float(pdata.data["symptom_weeks"].max())
    rows = []
    for s in chronicity_grid(cfg):
        e = effect(float(s))
        rows.append(
            {
                "symptom_weeks": float(s),
                "effect": e["estimate"],
                "ci_low": e["ci_low"],
                "ci_high": e["ci_high"],
                "within_data": bool(lo <= s <= hi),
            }
        )
    table = pd.DataFrame(rows, columns=CHRONICITY_COLUMNS)
    inter = linear_contrast(fit, {whl: 1.0}, alpha)
    return {
        "at_symptom_weeks": at,
        "interaction": inter
        | {
            "term": whl,
            "per": "NPRS points per week per unit of ln(symptom_weeks + 1)",
            "change_at_primary_week_per_log_unit": pw * inter["estimate"],
        },
        "fit_status": fit.status,
        "fit_reason": fit.reason or None,
        "fit": {k: v for k, v in mixed_summary(fit, alpha).items() if k not in ("fixed_effects",)},
        "formula": formula,
        "observed_symptom_weeks": [lo, hi],
        "notes": [
            (
                "effects are differences in change at the primary week (hip-focused minus comparator); "
                "the table marks durations outside the observed range (within_data = false): extrapolation."
            )
        ],
    }, {"chronicity": table}
