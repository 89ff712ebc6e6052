"""Responders: share of clients reaching the measure's MCID by the primary week, and the NNT.

A client *responds* when the improvement from baseline at the endpoint (see
:mod:`analysis.model.endpoint`: the observation closest to the primary week
within the endpoint window) reaches the registry's MCID in points or in
percent of the baseline -- either counts, in the measure's better direction.
Clients without an endpoint observation are not counted (complete cases);
their number per group is reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import patsy
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from analysis.contract import Measure
from analysis.model.endpoint import client_endpoint, collapse_sparse_levels, rhs, usable_terms
from analysis.model.entries import FitFailed, NotEstimable, fit_checked
from analysis.model.fit import wald
from analysis.model.prepare import PrimaryData
from analysis.params_schema import ModelParams

RESPONDER_COLUMNS = ["group", "n", "responders", "share"]
GROUPS = {1: "hip_focused", 0: "comparator"}


def is_responder(baseline: pd.Series, value: pd.Series, measure: Measure) -> pd.Series:
    """1 where the improvement reaches the MCID in points or percent of baseline (either), else 0.

    Percent is undefined at a baseline of 0 and then only points count.
    """
    if measure.mcid_points is None and measure.mcid_percent is None:
        raise NotEstimable(f"{measure.key} has no MCID in config/measures.yaml")
    base = baseline.astype(float)
    improvement = measure.improvement(base, value)
    # the same rule as the therapist's report: reaching the smaller of the two MCIDs is reaching either
    needed = measure.mcid_needed(base)
    return (improvement >= needed - 1e-9).fillna(False).astype("int64")


def log_odds_ratio(r1: int, n1: int, r0: int, n0: int) -> dict[str, Any]:
    """Unadjusted log odds ratio (hip-focused vs comparator) and its Woolf SE, for pooling across clinics.

    Cells of 0 get the usual 0.5 added to all four (``continuity``); with an empty group there is none.
    """
    cells = np.array([r1, n1 - r1, r0, n0 - r0], dtype=float)
    if n1 == 0 or n0 == 0:
        return {"estimate": None, "se": None, "continuity": None, "method": "Woolf"}
    cc = 0.5 if (cells == 0).any() else 0.0
    a, b, c, d = cells + cc
    return {
        "estimate": float(np.log(a * d / (b * c))),
        "se": float(np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)),
        "continuity": cc,
        "method": "Woolf (unadjusted)",
    }


def nnt(rd: float, ci_low: float, ci_high: float) -> dict[str, Any]:
    """Number needed to treat from a risk difference (benefit positive) and its CI (Altman 1998).

    Returns
    -------
    dict with ``nnt`` (1/|rd|, None when rd = 0), ``kind`` ('benefit' or
    'harm'), ``ci_low``/``ci_high`` (the NNT interval when the RD CI excludes
    0: ``1/ci_high .. 1/ci_low`` for benefit, ``1/|ci_low| .. 1/|ci_high|``
    for harm), and ``text``. When the RD CI crosses 0 the NNT interval is not
    an interval: it runs from NNT(benefit) ``1/ci_high`` through infinity to
    NNT(harm) ``1/|ci_low|``; then ``ci_low``/``ci_high`` are None and
    ``nnt_benefit_limit``/``nnt_harm_limit`` are given.
    """
    out = {
        "nnt": None if rd == 0 else float(1.0 / abs(rd)),
        "kind": "benefit" if rd > 0 else "harm",
        "ci_low": None,
        "ci_high": None,
        "nnt_benefit_limit": None,
        "nnt_harm_limit": None,
    }
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        out["text"] = "CI not available"
        return out
    if ci_low > 0:
        out.update(ci_low=1.0 / ci_high, ci_high=1.0 / ci_low)
        out["text"] = f"NNT (benefit) {out['nnt']:.1f} (95% CI {out['ci_low']:.1f} to {out['ci_high']:.1f})"
    elif ci_high < 0:
        out.update(ci_low=1.0 / abs(ci_low), ci_high=1.0 / abs(ci_high))
        out["text"] = f"NNT (harm) {out['nnt']:.1f} (95% CI {out['ci_low']:.1f} to {out['ci_high']:.1f})"
    else:
        benefit = 1.0 / ci_high if ci_high > 0 else None
        harm = 1.0 / abs(ci_low) if ci_low < 0 else None
        out.update(nnt_benefit_limit=benefit, nnt_harm_limit=harm)
        point = "infinite" if out["nnt"] is None else f"{out['nnt']:.1f} ({out['kind']})"
        out["text"] = (
            f"NNT {point}; the CI of the risk difference includes 0, so the NNT interval runs from "
            f"NNT (benefit) {'-' if benefit is None else f'{benefit:.1f}'} through infinity to "
            f"NNT (harm) {'-' if harm is None else f'{harm:.1f}'}"
        )
    return out


def responder_analysis(
    pdata: PrimaryData, cfg: ModelParams, measure: Measure
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Responders by group, adjusted odds ratio, risk difference and NNT.

    Returns
    -------
    (numbers, tables) with the table ``responders``: ``group``, ``n``
    (clients with an endpoint), ``responders``, ``share``.
    """
    alpha = cfg.alpha
    ep = client_endpoint(pdata.data, cfg)
    n_missing = {GROUPS[g]: int(((ep["hip"] == g) & (ep["observed"] == 0)).sum()) for g in (1, 0)}
    ep = ep[ep["observed"] == 1].copy()
    ep["responder"] = is_responder(ep["baseline_y"], ep["y_end"], measure)
    table = pd.DataFrame(
        [
            {
                "group": GROUPS[g],
                "n": int((ep["hip"] == g).sum()),
                "responders": int(ep.loc[ep["hip"] == g, "responder"].sum()),
            }
            for g in (1, 0)
        ]
    )
    table["share"] = table["responders"] / table["n"].where(table["n"] > 0)
    n1, n0 = int(table["n"].loc[0]), int(table["n"].loc[1])
    r1, r0 = int(table["responders"].loc[0]), int(table["responders"].loc[1])
    if min(n1, n0) < 2:
        raise NotEstimable(f"too few clients with an endpoint (hip-focused {n1}, comparator {n0})")

    p1, p0 = r1 / n1, r0 / n0
    rd = p1 - p0
    lo, hi = confint_proportions_2indep(r1, n1, r0, n0, method="newcomb", compare="diff", alpha=alpha)
    z = stats.norm.ppf(1 - alpha / 2)
    se_wald = float(np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))
    numbers: dict[str, Any] = {
        "n_hip_focused": n1,
        "n_comparator": n0,
        "responders_hip_focused": r1,
        "responders_comparator": r0,
        "share_hip_focused": p1,
        "share_comparator": p0,
        "missing_endpoint": n_missing,
        "definition": _definition(measure, cfg),
        "risk_difference": {
            "estimate": rd,
            "ci_low": float(lo),
            "ci_high": float(hi),
            "ci_method": "Newcombe hybrid score",
            "wald_ci_low": float(rd - z * se_wald),
            "wald_ci_high": float(rd + z * se_wald),
        },
        "nnt": nnt(rd, float(lo), float(hi)),
        "log_odds_ratio": log_odds_ratio(r1, n1, r0, n0),
    }
    notes = [
        (
            f"complete cases: {sum(n_missing.values())} client(s) without an observation in the endpoint window "
            "are not counted (see multiple_imputation for an analysis that includes them)."
        )
    ]

    if r1 + r0 in (0, n1 + n0):
        numbers.update(
            odds_ratio=None,
            adjusted_risk_difference=None,
            adjusted_status="not_estimable",
            adjusted_reason="every client (or none) responded",
        )
        notes.append("every client (or none) responded: no odds ratio.")
        return {**numbers, "notes": notes}, {"responders": table[RESPONDER_COLUMNS]}

    df, merge_notes = collapse_sparse_levels(ep, pdata.covariates, cfg.min_level_n)
    df, covs, const_notes = usable_terms(df, pdata.covariates)
    notes += merge_notes + const_notes
    formula = "responder ~ " + rhs("hip", "baseline_y", covs)
    y, x = patsy.dmatrices(formula, df, return_type="dataframe")
    try:
        res = fit_checked(
            "logistic regression of responding", lambda: sm.Logit(y, x).fit(method="newton", maxiter=100, disp=False)
        )
    except FitFailed as exc:
        # the unadjusted comparison stands on its own; only the adjusted numbers are lost
        numbers.update(
            odds_ratio=None, adjusted_risk_difference=None, adjusted_status="failed", adjusted_reason=str(exc)
        )
        notes.append(f"adjusted odds ratio not estimable: {exc}")
        return {**numbers, "notes": notes}, {"responders": table[RESPONDER_COLUMNS]}
    b, se = float(res.params["hip"]), float(res.bse["hip"])
    w = wald(b, se, alpha)
    numbers["odds_ratio"] = {
        "estimate": float(np.exp(b)),
        "ci_low": float(np.exp(w["ci_low"])),
        "ci_high": float(np.exp(w["ci_high"])),
        "p_value": w["p_value"],
        "formula": formula,
    }
    numbers["adjusted_risk_difference"] = _standardised_rd(res, x.design_info, df, alpha)
    numbers.update(adjusted_status="ok", adjusted_reason=None)
    return {**numbers, "notes": notes}, {"responders": table[RESPONDER_COLUMNS]}


def _standardised_rd(res: Any, info: patsy.DesignInfo, df: pd.DataFrame, alpha: float) -> dict[str, Any]:
    """Marginal standardisation: everyone hip-focused minus everyone knee-focused, delta-method CI."""
    x1 = np.asarray(patsy.build_design_matrices([info], df.assign(hip=1))[0])
    x0 = np.asarray(patsy.build_design_matrices([info], df.assign(hip=0))[0])
    beta = np.asarray(res.params)
    q1, q0 = 1 / (1 + np.exp(-x1 @ beta)), 1 / (1 + np.exp(-x0 @ beta))
    est = float(q1.mean() - q0.mean())
    grad = (x1 * (q1 * (1 - q1))[:, None]).mean(axis=0) - (x0 * (q0 * (1 - q0))[:, None]).mean(axis=0)
    se = float(np.sqrt(max(grad @ np.asarray(res.cov_params()) @ grad, 0.0)))
    out = wald(est, se, alpha)
    out["method"] = "marginal standardisation over the analysed clients, delta-method CI"
    out["share_all_hip_focused"], out["share_all_comparator"] = float(q1.mean()), float(q0.mean())
    return out


def _definition(measure: Measure, cfg: ModelParams) -> str:
    parts = []
    if measure.mcid_points is not None:
        parts.append(f"{measure.mcid_points:g} points")
    if measure.mcid_percent is not None:
        parts.append(f"{measure.mcid_percent:g}% of baseline")
    better = "lower" if measure.lower_is_better else "higher"
    return (
        f"improvement ({better} is better) of at least {' or '.join(parts)} at the observation closest to week "
        f"{cfg.primary_week} within +/-{cfg.endpoint_window_weeks} weeks"
    )
