"""Precision: what this clinic's numbers can detect, and how many clients a given difference would need.

Based on the client-level endpoint (:mod:`analysis.model.endpoint`) analysed
by ANCOVA (change ~ group + baseline + covariates): the residual SD of that
model is the SD that enters a two-sample t-test power calculation
(statsmodels ``TTestIndPower``). The mixed model uses every visit and can be
somewhat more precise, so these numbers are conservative for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.power import TTestIndPower

from analysis.model.endpoint import client_endpoint, rhs, usable_terms
from analysis.model.entries import NotEstimable, fit_checked
from analysis.model.fit import MixedFit
from analysis.model.prepare import PrimaryData
from analysis.params_schema import ModelParams


def precision_analysis(
    pdata: PrimaryData, primary_fit: MixedFit | None, cfg: ModelParams
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Minimum detectable difference at the primary week and the n per group for ``target_difference``."""
    alpha, power, target = cfg.alpha, cfg.power, cfg.target_difference
    ep = client_endpoint(pdata.data, cfg)
    ep = ep[ep["observed"] == 1]
    n1, n0 = int((ep["hip"] == 1).sum()), int((ep["hip"] == 0).sum())
    if min(n1, n0) < 3:
        raise NotEstimable(f"too few clients with an endpoint (hip-focused {n1}, comparator {n0})")
    ep, covs, notes = usable_terms(ep, pdata.covariates)
    res = fit_checked("ANCOVA", lambda: smf.ols("change ~ " + rhs("hip", "baseline_y", covs), data=ep).fit())
    sd_resid = float(np.sqrt(res.scale))
    sd_change = float(ep["change"].std(ddof=1))
    r = float(np.corrcoef(ep["baseline_y"], ep["y_end"])[0, 1])
    solver = TTestIndPower()
    d_min = float(solver.solve_power(effect_size=None, nobs1=n1, ratio=n0 / n1, alpha=alpha, power=power))
    n_needed = float(solver.solve_power(effect_size=target / sd_resid, nobs1=None, ratio=1.0, alpha=alpha, power=power))
    icc = None
    if primary_fit is not None and primary_fit.ok:
        # between-client share of variance at week 0 (random intercept variance / total)
        v0 = float(primary_fit.accepted.cov_re[0, 0])
        icc = v0 / (v0 + float(primary_fit.accepted.sigma2))
    return {
        "minimum_detectable_difference": d_min * sd_resid,
        "minimum_detectable_d": d_min,
        "n_per_group_for_target": int(np.ceil(n_needed)),
        "target_difference": target,
        "power": power,
        "alpha": alpha,
        "n_hip_focused": n1,
        "n_comparator": n0,
        "sd_residual_ancova": sd_resid,
        "sd_change": sd_change,
        "corr_baseline_endpoint": r,
        "icc_week0": icc,
        "method": (
            "two-sample t-test power (statsmodels TTestIndPower) with the residual SD of the ANCOVA of the "
            "per-client change at the endpoint on group, baseline and covariates"
        ),
        "notes": notes
        + [
            (
                "the minimum detectable difference is for this clinic's group sizes (clients with an "
                "endpoint); n per group assumes equal groups. Precision statements, not post-hoc power "
                "for the observed effect."
            )
        ],
    }, {}
