"""The peer paper's own tables and method texts: Table 1 with n (%) and standardised differences, the
follow-up summary, the unadjusted and adjusted estimates, and the specification of every analysis.

Counts pass through the project's suppression (:func:`analysis.report.peer.baseline_table`,
:func:`analysis.privacy.suppress_count`): a percentage is shown only beside a count that is shown, and a
variable's standardised difference only when none of its cells is hidden (with the group sizes known,
a difference in shares could otherwise give a small count back).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.params_schema import ModelParams
from analysis.privacy import suppress_count
from analysis.report.peer import baseline_table
from analysis.report.text import fmt_num
from analysis.results import Results

CATEGORICAL = ("sex", "age_band", "activity", "knee")
CONTINUOUS = ("baseline_pain", "symptom_weeks", "sitting_hours")


def smd_continuous(x1: pd.Series, x0: pd.Series) -> float:
    """Standardised mean difference ``(mean1 - mean0) / sqrt((var1 + var0) / 2)`` (NaN when undefined)."""
    a, b = x1.dropna().astype(float), x0.dropna().astype(float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else math.nan


def smd_categorical(x1: pd.Series, x0: pd.Series) -> float:
    """Standardised difference of a categorical variable (Yang & Dalton 2012; the usual SMD for two levels).

    ``sqrt((T - C)' S^-1 (T - C))`` with T, C the level shares (first level dropped) and S the mean of the
    two groups' multinomial covariance matrices.
    """
    levels = sorted(set(x1.dropna().astype(str)) | set(x0.dropna().astype(str)))
    if len(levels) < 2 or x1.dropna().empty or x0.dropna().empty:
        return math.nan
    t = x1.dropna().astype(str).value_counts(normalize=True).reindex(levels, fill_value=0.0).to_numpy()[1:]
    c = x0.dropna().astype(str).value_counts(normalize=True).reindex(levels, fill_value=0.0).to_numpy()[1:]

    def cov(p: np.ndarray) -> np.ndarray:
        return np.diag(p) - np.outer(p, p)

    s = (cov(t) + cov(c)) / 2
    d = t - c
    return float(math.sqrt(max(float(d @ np.linalg.pinv(s) @ d), 0.0)))


def table1(clients: pd.DataFrame, min_cell: int) -> dict[str, Any]:
    """Table 1: n (%) per level and group, and one standardised difference per variable.

    Parameters
    ----------
    clients : one row per analysed client: group, the categorical variables, baseline_pain, symptom_weeks,
        sitting_hours.
    min_cell : the smallest count shown.

    Returns
    -------
    dict with ``groups`` (names), ``categorical`` (rows: variable, level, one "n (%)" text per group, total,
    smd text on the variable's first row) and ``continuous`` (rows: variable, per group "mean (SD)", smd).
    """
    groups = sorted(clients["group"].unique())
    sizes = clients["group"].value_counts()
    safe = baseline_table(clients, min_cell)
    rows = []
    for var, block in safe.groupby("variable", sort=False):
        hidden = block[[*groups, "total"]].apply(lambda c: ~c.str.fullmatch(r"\d+")).to_numpy().any()
        smd = math.nan
        if not hidden and len(groups) == 2:
            smd = smd_categorical(
                clients.loc[clients["group"] == groups[1], var], clients.loc[clients["group"] == groups[0], var]
            )
        for i, r in enumerate(block.itertuples(index=False)):
            row: dict[str, Any] = {"variable": var, "level": r.level, "total": r.total}
            for g in groups:
                shown = str(getattr(r, g) if g.isidentifier() else r[list(block.columns).index(g)])
                pct = f" ({100 * int(shown) / sizes[g]:.0f}%)" if shown.isdigit() and sizes[g] else ""
                row[g] = shown + pct
            row["smd"] = ("—" if hidden else fmt_num(abs(smd))) if i == 0 else ""
            rows.append(row)
    cont = []
    groups_ok = len(groups) == 2 and bool((sizes.reindex(groups) >= min_cell).all())
    for var in [v for v in CONTINUOUS if v in clients.columns]:
        row = {"variable": var}
        for g in groups:
            v = clients.loc[clients["group"] == g, var].astype(float)
            row[g] = f"{v.mean():.1f} ({v.std(ddof=1):.1f})" if groups_ok and v.notna().sum() >= min_cell else "—"
        row["smd"] = "—"
        if groups_ok:
            x1, x0 = (clients.loc[clients["group"] == g, var] for g in (groups[1], groups[0]))
            row["smd"] = fmt_num(abs(smd_continuous(x1, x0)))
        cont.append(row)
    return {"groups": groups, "categorical": rows, "continuous": cont}


def followup_summary(
    analysed: pd.DataFrame, measure: str, timing: str, primary_week: float, min_cell: int
) -> list[dict[str, str]]:
    """Follow-up per group: median (IQR) weeks to the last score and sessions, and clients followed to the
    primary week ("n (%)", suppression-aware: hidden as "*" when it or the clients not followed are 1..min_cell-1).

    Parameters
    ----------
    analysed : the analysis dataset of the compared clients with a ``group`` column.
    """
    d = analysed[(analysed["measure"] == measure) & (analysed["timing"] == timing) & analysed["value"].notna()]
    out = []
    for g, gd in d.groupby("group", sort=True):
        last = gd.groupby("client_id")["weeks_since_first"].max()
        sessions = analysed[analysed["group"] == g].groupby("client_id")["session_id"].nunique()
        n = len(last)
        reached = int((last >= primary_week - 1e-9).sum())
        small = 0 < reached < min_cell or 0 < n - reached < min_cell
        if n < min_cell:
            out.append({"group": str(g), "weeks": "—", "sessions": "—", "reached": suppress_count(n, min_cell)})
            continue
        q = last.quantile([0.25, 0.5, 0.75])
        s = sessions.quantile([0.25, 0.5, 0.75])
        out.append(
            {
                "group": str(g),
                "weeks": f"{q[0.5]:.1f} ({q[0.25]:.1f}–{q[0.75]:.1f})",
                "sessions": f"{s[0.5]:.0f} ({s[0.25]:.0f}–{s[0.75]:.0f})",
                "reached": "*" if small else f"{reached} ({100 * reached / n:.0f}%)",
            }
        )
    return out


def estimate_rows(results: Results) -> list[dict[str, str]]:
    """Unadjusted and adjusted estimates of the difference in change at the primary week, and the
    adjusted estimate under the flexible time trend (rows: label, model, estimate, ci, p)."""
    p = results.primary
    rows = []

    def add(label: str, model: str, e: Any) -> None:
        rows.append(
            {
                "label": label,
                "model": model,
                "estimate": fmt_num(e.estimate) if e is not None else "—",
                "ci": f"{fmt_num(e.ci_low)} to {fmt_num(e.ci_high)}" if e is not None else "not estimable",
                "p": fmt_num(e.p_value, 3) if e is not None and math.isfinite(e.p_value) else "—",
            }
        )

    unadj = results.secondary.get("unadjusted")
    add("Unadjusted", "y ~ week * hip", None if unadj is None else unadj.headline)
    add("Adjusted (primary)", p.formula, p if p.ok else None)
    trend = results.secondary.get("time_trend")
    add(
        "Adjusted, piecewise-linear time trend",
        str((trend.numbers.get("formula") if trend is not None else "") or ""),
        None if trend is None else trend.headline,
    )
    return rows


def method_specs(results: Results, cfg: ModelParams, packages: dict[str, str]) -> list[dict[str, str]]:
    """The specification of each sensitivity and exploratory analysis, complete enough to reproduce it."""
    sm = packages.get("statsmodels", "?")
    sec = results.secondary

    def num(key: str, field: str) -> Any:
        e = sec.get(key)
        return None if e is None else e.numbers.get(field)

    knots = ", ".join(f"{k:g}" for k in (cfg.time_trend_knots or [cfg.primary_week]))
    covs = ", ".join(cfg.covariates).replace("_", " ")
    return [
        {
            "name": "Unadjusted estimate",
            "text": "The primary mixed model (REML, random intercept and slope per client) without covariates.",
        },
        {
            "name": "Flexible time trend (pre-specified)",
            "text": (
                f"The primary model with hinge terms max(week − k, 0) at k = {knots} weeks and their interactions with "
                "group, so that each group's trend may bend; the difference at the primary week is estimated from "
                "the REML fit, and the linear trend is tested against it by a likelihood-ratio test of the two ML "
                "fits (2 df per knot)."
            ),
        },
        {
            "name": "Generalised estimating equations",
            "text": (
                f"statsmodels {sm} GEE, Gaussian family, identity link, exchangeable working correlation within "
                "client, robust (sandwich) standard errors; the mean model is the primary model's fixed part. The "
                "exchangeable correlation is estimated by statsmodels' moment estimator; R's geepack estimates it "
                "another way (a different moment formula), which has been seen to change the estimates by up to 0.6 %."
            ),
        },
        {
            "name": "Inverse probability of treatment weighting",
            "text": (
                f"Propensity of a hip-focused first session by logistic regression "
                f"({num('iptw', 'propensity_formula') or 'hip ~ baseline outcome + ' + covs}); stabilised weights, "
                f"trimmed at the {cfg.iptw_trim[0]:g} and {cfg.iptw_trim[1]:g} quantiles; weighted least squares of "
                "the change at the endpoint with HC1 robust standard errors. Balance is judged by the standardised "
                f"mean difference of every covariate level after weighting, target below {cfg.smd_target:g}; an "
                "analysis that misses the target is reported as inconclusive."
            ),
        },
        {
            "name": "Multiple imputation and tipping point",
            "text": (
                f"{cfg.n_imputations} imputations of the endpoint (and of missing sitting hours) by chained equations "
                f"with predictive mean matching ({cfg.mi_pmm_donors} donors, proper Bayesian parameter draws, "
                f"{cfg.mi_iterations} iterations), predictors group, baseline outcome, last earlier value and its "
                "week, and the covariates; ANCOVA of change per imputed set; Rubin's rules with Barnard-Rubin df. "
                "Tipping point: imputed hip-focused endpoints made δ = "
                + ", ".join(f"{d:g}" for d in cfg.tipping_deltas)
                + " points worse."
            ),
        },
        {
            "name": "E-value",
            "text": (
                "For the primary estimate and its confidence limit nearer no difference: d = estimate / SD of the "
                "baseline outcome, RR ≈ exp(0.91 d), E-value = RR + sqrt(RR (RR − 1))."
            ),
        },
        {
            "name": "Responders",
            "text": (
                "Improvement by at least the MCID at the observation closest to the primary week within "
                f"±{cfg.endpoint_window_weeks:g} weeks (complete cases); risk difference with Newcombe's hybrid score "
                "CI, number needed to treat with Altman's CI (given only when the CI of the risk difference excludes "
                "0); adjusted odds ratio and standardised risk difference by logistic regression."
            ),
        },
        {
            "name": "Time to improvement",
            "text": (
                "Kaplan-Meier estimate per group of the time to the first MCID improvement, with pointwise CIs on the "
                "complementary log-log scale (log-log; R's survfit uses the log scale by default), log-rank test."
            ),
        },
        {
            "name": "Mediation",
            "text": (
                "Product of coefficients (a × b) with OLS models of the gain in hip internal rotation and of the "
                f"change in pain; percentile bootstrap over clients ({cfg.mediation_boot} resamples, seed "
                f"{cfg.seed})."
            ),
        },
        {
            "name": "Chronicity, dose-response, immediate effect",
            "text": (
                "Mixed models with the primary model's random effects: week × hip × ln(symptom weeks + 1); week + hip "
                "+ earlier hip-focused sessions (time-varying); within-session change with a random intercept."
            ),
        },
    ]
