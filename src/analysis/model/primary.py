"""Primary analysis: do clients whose care started hip-focused improve faster than knee-focused ones?

Model (REML linear mixed model, one row per client x session within the
follow-up window)::

    y ~ week * hip + <covariates>,   random intercept and slope on week per client

``week`` is weeks since the first session and ``hip`` is 1 when the first
session was hip-focused. Pain is assumed to change linearly over the window.

Estimands (hip-focused minus knee-focused; negative = hip-focused improved more):

- **headline**: difference in model-estimated change from baseline at the
  primary week (params ``model.primary_week``, default 6) =
  ``primary_week x coef(week:hip)``;
- ``slope_difference``: difference in the pain slope per week = ``coef(week:hip)``.

This is an observational comparison adjusted for the measured covariates, not
a randomised one; unmeasured confounding by indication remains possible.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.model.endpoint import arm_summaries
from analysis.model.fit import (
    DF_METHOD_LABELS,
    MixedFit,
    fit_mixed_with_fallback,
    fit_options,
    linear_contrast,
    mixed_summary,
)
from analysis.model.prepare import PrimaryData
from analysis.params_schema import ModelParams

GROUPS = "client_id"
RE_FORMULA = "~week"
SLOPE_TERM = "week:hip"
TRAJECTORY_COLUMNS = ["group", "week", "mean", "ci_low", "ci_high"]
FIXED_COLUMNS = ["term", "estimate", "se", "df", "ci_low", "ci_high", "p_value"]
GROUP_LABELS = {1: "hip-focused", 0: "knee-focused"}
TRAJECTORY_METHOD = (
    "standardised to the analysed clients: each design column set to its mean over analysed clients (one row "
    "per client; for categorical covariates, the share in each level), week and group set as shown; for this "
    "linear model this equals averaging every analysed client's predicted trajectory"
)


def primary_formula(pdata: PrimaryData) -> str:
    """The fixed-effects formula, e.g. ``'y ~ week * hip + C(age_band) + ... + sitting_hours_missing'``."""
    return " + ".join(["y ~ week * hip", *pdata.covariates])


def primary_analysis(pdata: PrimaryData, cfg: ModelParams) -> tuple[dict[str, Any], dict[str, pd.DataFrame], MixedFit]:
    """Fit the primary model and derive the estimands.

    Parameters
    ----------
    pdata : from :func:`analysis.model.prepare.primary_data`.
    cfg : params ``model`` section (``primary_week``, ``followup_weeks``,
        ``alpha``, ``df_method``, ``singular_tol``, ``measure``, ``timing``).

    Returns
    -------
    entry : dict[str, Any] (JSON-ready) with ``estimand``, ``formula``, ``re_formula``,
        ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``p_value`` (the headline:
        difference in change at the primary week), ``slope_difference``
        {estimate, se, ci_low, ci_high, p_value}, ``change_by_group``,
        ``n_clients``, ``n_clients_by_group``, ``n_observations``, ``converged``,
        ``optimizer``, ``status``, ``reason``, ``checks``, ``attempts``,
        ``fixed_effects`` {term: {estimate, se, ci_low, ci_high, p_value}},
        ``random_effects`` {variances, covariance, correlation,
        residual_variance}, ``reference_levels``, ``trajectory_method``,
        ``excluded`` {reason: clients}, ``notes``. When the fit failed the
        estimates are None and ``status`` is ``'failed'``.
    tables : ``trajectories`` (group, week, mean, ci_low, ci_high),
        ``fixed_effects`` (term, estimate, se, ci_low, ci_high, p_value) and
        ``primary_exclusions`` (reason, clients); empty frames when the fit failed.
    fit : the :class:`~analysis.model.fit.MixedFit` (``result`` None when failed).

    Examples
    --------
    >>> from analysis.join import build_analysis_dataset
    >>> from analysis.model.prepare import primary_data
    >>> from analysis.params import load_params
    >>> from analysis.simulate import simulate_clinic
    >>> params = load_params()
    >>> week = params.model.primary_week
    >>> c = simulate_clinic(params.simulate, seed=1, n_clients=40, primary_week=week)  # a small clinic, in memory
    >>> dataset = build_analysis_dataset(c.clients, c.sessions, c.measurements)
    >>> entry, tables, fit = primary_analysis(primary_data(dataset, params.model), params.model)
    >>> entry["status"], round(entry["estimate"], 2), round(entry["ci_low"], 2), round(entry["ci_high"], 2)
    ('ok', -0.97, -2.41, 0.48)
    """
    alpha = cfg.alpha
    week0 = cfg.primary_week
    formula = primary_formula(pdata)
    fit = fit_mixed_with_fallback(pdata.data, formula, GROUPS, RE_FORMULA, reml=True, **fit_options(cfg))
    summary = mixed_summary(fit, alpha)
    notes = list(pdata.notes)
    excluded_counts = pdata.excluded["reason"].value_counts().sort_index().to_dict() if not pdata.excluded.empty else {}
    entry = {
        "estimand": (
            f"difference (hip-focused minus knee-focused first session) in the model-estimated change "
            f"in {cfg.measure} ({cfg.timing}) from the first session to week {week0:g}, "
            "adjusted for the covariates; negative = hip-focused improved more"
        ),
        "measure": cfg.measure,
        "timing": cfg.timing,
        "primary_week": week0,
        "followup_weeks": cfg.followup_weeks,
        "alpha": alpha,
        "formula": formula,
        "re_formula": fit.re_formula if fit.status != "fallback" else None,
        "planned_re_formula": RE_FORMULA,
        "groups": GROUPS,
        "method": "REML",
        "df_method": fit.df_method,
        "df_method_label": DF_METHOD_LABELS[fit.df_method],
        "estimate": None,
        "se": None,
        "df": None,
        "ci_low": None,
        "ci_high": None,
        "p_value": None,
        "slope_difference": None,
        "change_by_group": None,
        "n_clients": pdata.n_clients,
        "n_clients_by_group": pdata.n_clients_by_group(),
        "n_observations": int(len(pdata.data)),
        "converged": fit.converged,
        "optimizer": fit.optimizer,
        "status": fit.status,
        "reason": fit.reason,
        "checks": fit.checks,
        "attempts": fit.attempts,
        "fixed_effects": summary["fixed_effects"],
        "random_effects": summary["random_effects"],
        "reference_levels": {k: v[0] for k, v in pdata.levels.items()},
        "trajectory_method": TRAJECTORY_METHOD,
        "excluded": {str(k): int(v) for k, v in excluded_counts.items()},
        "arms": arm_summaries(pdata.data, cfg),
        "notes": notes,
    }
    exclusions = pd.DataFrame(sorted(excluded_counts.items()), columns=["reason", "clients"])
    empty = {
        "trajectories": pd.DataFrame(columns=TRAJECTORY_COLUMNS),
        "fixed_effects": pd.DataFrame(columns=FIXED_COLUMNS),
        "primary_exclusions": exclusions,
    }
    needed = sorted({"week", "hip", SLOPE_TERM} & set(fit.dropped))
    if fit.ok and needed:
        fit.status, fit.reason, fit.result = (
            "failed",
            (
                f"the terms {', '.join(needed)} of the estimand are not estimable in these data (aliased with other "
                "terms)"
            ),
            None,
        )
        entry.update(status=fit.status, reason=fit.reason, converged=False)
    if not fit.ok:
        notes.append(f"the primary model could not be fitted trustworthily: {fit.reason}. No estimate is reported.")
        return entry, empty, fit
    if fit.dropped:
        notes.append(f"not estimable in these data, so left out of the model (as lme4 does): {', '.join(fit.dropped)}.")
    if fit.status == "fallback":
        notes.append(f"FALLBACK: {fit.reason}.")

    headline = linear_contrast(fit, {SLOPE_TERM: week0}, alpha)
    entry.update({k: headline[k] for k in ("estimate", "se", "df", "ci_low", "ci_high", "p_value")})
    entry["slope_difference"] = linear_contrast(fit, {SLOPE_TERM: 1.0}, alpha)
    entry["change_by_group"] = {
        "comparator": linear_contrast(fit, {"week": week0}, alpha),
        "hip_focused": linear_contrast(fit, {"week": week0, SLOPE_TERM: week0}, alpha),
    }
    tables = {
        "trajectories": trajectories(fit, pdata, cfg.followup_weeks, alpha),
        "fixed_effects": pd.DataFrame(
            [{"term": k, **v} for k, v in summary["fixed_effects"].items()], columns=FIXED_COLUMNS
        ).assign(df=lambda t: pd.to_numeric(t["df"], errors="coerce")),
        "primary_exclusions": exclusions,
    }
    return entry, tables, fit


def trajectories(fit: MixedFit, pdata: PrimaryData, followup_weeks: float, alpha: float = 0.05) -> pd.DataFrame:
    """Adjusted mean outcome by group and week, standardised to the analysed clients.

    Returns
    -------
    DataFrame with ``group`` ('hip-focused' / 'knee-focused'), ``week``
    (0, 1, ..., followup_weeks), ``mean``, ``ci_low``, ``ci_high`` (pointwise
    t intervals with the fit's df method), sorted by group, week.
    """
    res = fit.accepted
    names = list(res.design.fixed_names)
    # Covariates are constant within client: average one row per client, not per visit,
    # so clients with many sessions do not weigh more.
    d = res.design
    first = np.r_[True, d.group_codes[1:] != d.group_codes[:-1]]
    xbar = pd.Series(d.X[first].mean(axis=0), index=names)
    rows = []
    for hip in (1, 0):
        for week in np.arange(0, int(np.floor(followup_weeks)) + 1, dtype=float):
            x = xbar.copy()
            x["week"], x["hip"], x[SLOPE_TERM] = week, float(hip), week * hip
            c = res.contrast(x.to_numpy(dtype=float), fit.df_method, alpha)
            rows.append(
                {
                    "group": GROUP_LABELS[hip],
                    "week": week,
                    "mean": c["estimate"],
                    "ci_low": c["ci_low"],
                    "ci_high": c["ci_high"],
                }
            )
    return pd.DataFrame(rows, columns=TRAJECTORY_COLUMNS).sort_values(["group", "week"]).reset_index(drop=True)


def fit_diagnostics(fit: MixedFit, pdata: PrimaryData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-observation fitted values/residuals and per-client random effects (therapist-only diagnostics).

    Returns
    -------
    diagnostics : DataFrame with ``client_id``, ``week``, ``y``, ``fitted``
        (fixed + predicted random effects), ``residual`` (y - fitted), in the
        order of ``pdata.data``.
    random_effects : DataFrame with ``client_id``, ``intercept``, ``slope``
        (predicted deviations, BLUPs; ``slope`` is 0 after a random-intercept
        fallback), sorted by client_id.
    """
    res = fit.accepted
    data = pdata.data
    fitted = res.fitted
    diag = pd.DataFrame(
        {
            "client_id": data[GROUPS].to_numpy(),
            "week": data["week"].to_numpy(dtype=float),
            "y": data["y"].to_numpy(dtype=float),
            "fitted": fitted,
        }
    )
    diag = diag.assign(residual=diag["y"] - diag["fitted"])
    re = res.random_effects
    out = pd.DataFrame(
        {
            "client_id": re.index.astype(str),
            "intercept": re.iloc[:, 0].to_numpy(dtype=float),
            "slope": re.iloc[:, 1].to_numpy(dtype=float) if re.shape[1] > 1 else 0.0,
        }
    )
    return diag, out.sort_values("client_id").reset_index(drop=True)
