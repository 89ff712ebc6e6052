"""What the study shows: bias, empirical and model SE, coverage and rejection rates with their Monte
Carlo errors per scenario and df method, and a sentence saying whether each is within expectation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

SUMMARY_COLUMNS = [
    "scenario",
    "method",
    "mean_df",
    "true_slope_difference",
    "truth",
    "n_clinics",
    "n_fitted",
    "n_failed",
    "n_fallback",
    "mean_estimate",
    "bias",
    "bias_mcse",
    "bias_recorded",
    "empirical_se",
    "mean_model_se",
    "se_ratio",
    "se_ratio_mcse",
    "coverage",
    "coverage_mcse",
    "coverage_recorded",
    "rejection_rate",
    "rejection_meaning",
    "interpretation",
]
#: a departure from the target is reported when it exceeds this many Monte Carlo SEs
MC_FLAG = 2.0


def summarise(runs: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Operating characteristics per scenario.

    Returns
    -------
    DataFrame with :data:`SUMMARY_COLUMNS`, one row per scenario: counts of
    clinics, fitted, failed and fallback fits; ``bias`` (mean estimate - truth)
    with its Monte Carlo SE, ``bias_recorded``, ``empirical_se`` (SD of the
    estimates), ``mean_model_se``, ``se_ratio`` (mean model SE / empirical SE;
    ~1 if the SEs are honest) with its Monte Carlo SE ``se_ratio_mcse``
    (normal approximation for the SD of the estimates), ``coverage`` of the
    95% CI with its Monte Carlo SE, ``coverage_recorded``, ``rejection_rate``
    (type-I error when the true effect is 0, power otherwise),
    ``rejection_meaning`` and ``interpretation`` (plain language, from
    :func:`interpret`).
    """
    out = []
    runs = runs if "method" in runs.columns else runs.assign(method="satterthwaite")
    for (scenario, method), g in runs.groupby(["scenario", "method"], sort=True):
        ok = g[g["status"].isin(["ok", "fallback"])]
        n = len(ok)
        est = ok["estimate"].to_numpy(dtype=float)
        truth = float(g["truth"].mean())
        emp_se = float(np.std(est, ddof=1)) if n > 1 else np.nan
        cov = float(ok["covered"].mean()) if n else np.nan
        effect = float(g["true_slope_difference"].iloc[0])
        dfs = ok["df"].to_numpy(dtype=float) if "df" in ok.columns else np.array([np.nan])
        out.append(
            dict(
                scenario=scenario,
                method=method,
                mean_df=float(np.mean(dfs)) if len(dfs) else np.nan,
                true_slope_difference=effect,
                truth=truth,
                n_clinics=len(g),
                n_fitted=n,
                n_failed=int((g["status"] == "failed").sum()),
                n_fallback=int((g["status"] == "fallback").sum()),
                mean_estimate=float(est.mean()) if n else np.nan,
                bias=float(est.mean() - truth) if n else np.nan,
                bias_mcse=emp_se / np.sqrt(n) if n > 1 else np.nan,
                bias_recorded=float((ok["estimate"] - ok["truth_recorded"]).mean()) if n else np.nan,
                empirical_se=emp_se,
                mean_model_se=float(ok["se"].mean()) if n else np.nan,
                se_ratio=float(ok["se"].mean()) / emp_se if n > 1 and emp_se > 0 else np.nan,
                coverage=cov,
                coverage_mcse=float(np.sqrt(cov * (1 - cov) / n)) if n else np.nan,
                coverage_recorded=float(ok["covered_recorded"].mean()) if n else np.nan,
                rejection_rate=float(ok["rejected"].mean()) if n else np.nan,
                rejection_meaning="type-I error" if effect == 0 else "power",
            )
        )
        r = out[-1]
        r["se_ratio_mcse"] = r["se_ratio"] / np.sqrt(2 * (n - 1)) if n > 1 else np.nan
        r["interpretation"] = interpret(r, alpha)
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def interpret(r: dict[str, Any], alpha: float = 0.05) -> str:
    """One plain-language line: each operating characteristic against its target, within Monte Carlo error?

    ``r`` is one summary row (keys of :data:`SUMMARY_COLUMNS` except
    ``interpretation``). Coverage and type-I error are judged against their
    nominal values with the Monte Carlo SE *at* the nominal value
    (``sqrt(p (1 - p) / n)``), the test a correct method would pass; a
    departure beyond :data:`MC_FLAG` Monte Carlo SEs is spelled out.

    Returns
    -------
    str, e.g. ``'no detectable bias (+0.010, MCSE 0.025); model SEs match the
    empirical SE within MC error (ratio 1.02, MCSE 0.05); coverage 94.5%
    within MC error of 95%; type-I error 5.5% within MC error of 5%'``.
    """
    n = int(r["n_fitted"])
    if n < 2:
        return f"too few fitted clinics ({n}) to judge the estimator"
    parts = []
    bias, mcse = float(r["bias"]), float(r["bias_mcse"])
    if abs(bias) <= MC_FLAG * mcse:
        parts.append(f"no detectable bias ({bias:+.3f}, MCSE {mcse:.3f})")
    else:
        text = f"bias {bias:+.3f} ({abs(bias) / mcse:.1f} MCSE)"
        rec = float(r["bias_recorded"])
        if np.isfinite(rec) and abs(rec) <= MC_FLAG * mcse:
            # Rounding to whole points and the floor at 0 shrink the observable difference.
            text += f", explained by recording whole points 0-10 (bias vs recorded-scale truth {rec:+.3f})"
        parts.append(text)
    ratio, rmcse = float(r["se_ratio"]), float(r["se_ratio_mcse"])
    if abs(ratio - 1) <= MC_FLAG * rmcse:
        parts.append(f"model SEs match the empirical SE within MC error (ratio {ratio:.2f}, MCSE {rmcse:.2f})")
    else:
        way = "too small" if ratio < 1 else "too large"
        parts.append(f"model SEs {way} by {abs(1 - ratio):.0%} (ratio {ratio:.2f}, MCSE {rmcse:.2f})")
    level = 1 - alpha
    cov, cmcse = float(r["coverage"]), float(np.sqrt(level * alpha / n))
    if abs(cov - level) <= MC_FLAG * cmcse:
        parts.append(f"coverage {cov:.1%} within MC error of {level:.0%}")
    else:
        way = "below" if cov < level else "above"
        parts.append(f"coverage {cov:.1%} {way} {level:.0%} beyond MC error (MCSE {cmcse:.1%})")
    rate = float(r["rejection_rate"])
    if r["rejection_meaning"] == "type-I error":
        if abs(rate - alpha) <= MC_FLAG * cmcse:
            parts.append(f"type-I error {rate:.1%} within MC error of {alpha:.0%}")
        else:
            way = "above" if rate > alpha else "below"
            parts.append(f"type-I error {rate:.1%} {way} {alpha:.0%} beyond MC error (MCSE {cmcse:.1%})")
    else:
        pmcse = np.sqrt(rate * (1 - rate) / n)
        parts.append(f"power {rate:.1%} (MCSE {pmcse:.1%})")
    if int(r["n_failed"]):
        parts.append(f"{int(r['n_failed'])} of {int(r['n_clinics'])} fits failed (rates are over fitted clinics)")
    return "; ".join(parts)
