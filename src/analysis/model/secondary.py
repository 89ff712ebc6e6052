"""Secondary and sensitivity analyses: every one exploratory, every one allowed to fail on its own.

:func:`run_secondary` runs the analyses below in a fixed order and returns
one entry per analysis (see :mod:`analysis.model.entries` for the entry
shape) and the tables to write as CSV. An analysis that cannot be estimated
or whose model cannot be trusted is recorded with ``status`` and ``reason``;
it never stops the others.

=====================  ==========================================================  ==================
entry                  what                                                        tables
=====================  ==========================================================  ==================
responders             MCID responders at the endpoint, OR, RD, NNT                responders
gee                    GEE (exchangeable, robust SEs) of the primary model         -
time_trend             piecewise-linear time trend per group (pre-specified)       -
unadjusted             the primary mixed model without covariates                  -
iptw                   stabilised IPTW, balance, weighted change at the endpoint   balance
e_value                E-value of the primary estimate                             -
multiple_imputation    MI (PMM, chained equations) of the endpoint, Rubin's rules  -
tipping_point          delta-adjusted MI for the hip-focused dropouts              tipping
chronicity             week x hip x ln(symptom weeks) moderation                   chronicity
mediation              hip IR gain as mediator (product of coefficients)          hip_ir_vs_pain
time_to_improvement    Kaplan-Meier to the MCID, log-rank                          km
dose_response          earlier hip-focused sessions (time-varying exposure)       -
immediate_effect       within-session change by focus                              immediate
precision              minimum detectable difference, n for a target difference    -
=====================  ==========================================================  ==================

The *endpoint* of the client-level analyses is defined in
:mod:`analysis.model.endpoint` (observation closest to the primary week
within ``endpoint_window_weeks``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from analysis.contract import Registry
from analysis.model.entries import NotEstimable, guarded
from analysis.model.fit import MixedFit
from analysis.model.imputation import impute, mi_analysis, tipping_analysis
from analysis.model.mechanism import dose_response_analysis, immediate_effect_analysis, mediation_analysis
from analysis.model.precision import precision_analysis
from analysis.model.prepare import PrimaryData
from analysis.model.responders import responder_analysis
from analysis.model.sensitivity import chronicity_analysis, e_value_analysis, gee_analysis, iptw_analysis
from analysis.model.specification import time_trend_analysis, unadjusted_analysis
from analysis.model.survival import time_to_improvement_analysis
from analysis.params_schema import ModelParams

LABELS = {
    "responders": (
        "Responders (MCID) at the primary week",
        (
            "share reaching the MCID at the endpoint; logistic regression (adjusted OR, standardised RD); "
            "Newcombe CI for the unadjusted RD; NNT"
        ),
    ),
    "gee": (
        "GEE with robust standard errors",
        "GEE, Gaussian, exchangeable working correlation, sandwich SEs; y ~ week * hip + covariates",
    ),
    "time_trend": (
        "Flexible time trend (piecewise linear)",
        (
            "the primary mixed model with hinge terms max(week - knot, 0) and their interaction with group "
            "(knot at the primary week unless set); REML estimate at the primary week; likelihood-ratio test "
            "of the ML fits against the linear trend"
        ),
    ),
    "unadjusted": ("Unadjusted mixed model", "the primary mixed model without covariates: y ~ week * hip"),
    "iptw": ("Inverse probability of treatment weighting", "stabilised IPTW, weighted regression of change"),
    "e_value": ("E-value of the primary estimate", "VanderWeele & Ding (2017), via d and RR = exp(0.91 d)"),
    "multiple_imputation": (
        "Multiple imputation of the primary-week outcome",
        (
            "chained equations with predictive mean matching (Bayesian parameter draws); ANCOVA "
            "of change per imputed set; Rubin's rules"
        ),
    ),
    "tipping_point": (
        "Tipping point (delta-adjusted multiple imputation)",
        "imputed hip-focused endpoints shifted delta points worse; Rubin's rules per delta",
    ),
    "chronicity": (
        "Effect by symptom duration",
        "mixed model y ~ week * hip * ln(symptom_weeks + 1) + covariates, random intercept and slope",
    ),
    "mediation": (
        "Mediation by hip internal-rotation gain",
        "product of coefficients (a x b) with OLS models; percentile bootstrap over clients",
    ),
    "time_to_improvement": (
        "Time to a clinically important improvement",
        "Kaplan-Meier per group (log-log CIs), log-rank test",
    ),
    "dose_response": (
        "Dose-response: earlier hip-focused sessions",
        "mixed model y ~ week + hip + prior_hip_sessions + covariates, random intercept and slope",
    ),
    "immediate_effect": (
        "Immediate within-session change by focus",
        "post - pre per session; mixed model with a random intercept per client",
    ),
    "precision": ("Precision of this clinic's data", "two-sample t-test power with the ANCOVA residual SD"),
}


def run_secondary(
    pdata: PrimaryData,
    dataset: pd.DataFrame,
    primary_fit: MixedFit | None,
    cfg: ModelParams,
    registry: Registry,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, pd.DataFrame]]:
    """Run every secondary analysis; collect entries and tables.

    Parameters
    ----------
    pdata : :class:`analysis.model.prepare.PrimaryData`.
    dataset : the full long analysis dataset (all measures, both timings).
    primary_fit : the primary :class:`analysis.model.fit.MixedFit` (may have failed).
    cfg : params ``model`` section.
    registry : the measures registry (MCID and direction of the measure).
    progress : called with each analysis' label before it runs (console progress).

    Returns
    -------
    (entries, tables) : ``entries`` name -> entry dict (``label``,
        ``exploratory`` True, ``status`` done/not_estimable/failed, ``reason``,
        ``method``, ``notes`` and the numbers); ``tables`` name -> DataFrame
        (responders, balance, tipping, chronicity, hip_ir_vs_pain, km,
        immediate) for the analyses that were done.

    Examples
    --------
    Fewer imputations and bootstrap draws than params.yaml asks for, to keep the example quick:

    >>> from analysis.contract import load_registry
    >>> from analysis.join import build_analysis_dataset
    >>> from analysis.model.prepare import primary_data
    >>> from analysis.model.primary import primary_analysis
    >>> from analysis.paths import resolve
    >>> from analysis.params import load_params
    >>> from analysis.simulate import simulate_clinic
    >>> params = load_params()
    >>> week = params.model.primary_week
    >>> c = simulate_clinic(params.simulate, seed=1, n_clients=40, primary_week=week)  # a small clinic, in memory
    >>> dataset = build_analysis_dataset(c.clients, c.sessions, c.measurements)
    >>> cfg = params.model.model_copy(update={"n_imputations": 5, "mediation_boot": 50})
    >>> pdata = primary_data(dataset, cfg)
    >>> fit = primary_analysis(pdata, cfg)[2]
    >>> entries, tables = run_secondary(pdata, dataset, fit, cfg, load_registry(resolve(params.data.registry)))
    >>> entries["gee"]["status"], round(entries["gee"]["estimate"], 2)
    ('done', -0.38)
    >>> sorted(tables)
    ['chronicity', 'hip_ir_vs_pain', 'immediate', 'km', 'responders', 'tipping']
    """
    measure = registry[cfg.measure]
    imputations: dict[str, Any] = {}

    def mi() -> tuple[dict[str, Any], dict[str, Any]]:
        imputations["set"] = impute(pdata, cfg)
        return mi_analysis(imputations["set"], cfg, measure)

    def tipping() -> tuple[dict[str, Any], dict[str, Any]]:
        if "set" not in imputations:
            raise NotEstimable("multiple imputation was not done (see multiple_imputation)")
        return tipping_analysis(imputations["set"], cfg, measure)

    plan: list[tuple[str, Callable[[], tuple[dict[str, Any], dict[str, Any]]]]] = [
        ("responders", lambda: responder_analysis(pdata, cfg, measure)),
        ("gee", lambda: gee_analysis(pdata, cfg)),
        ("time_trend", lambda: time_trend_analysis(pdata, cfg)),
        ("unadjusted", lambda: unadjusted_analysis(pdata, cfg)),
        ("iptw", lambda: iptw_analysis(pdata, cfg)),
        ("e_value", lambda: e_value_analysis(pdata, primary_fit, cfg)),
        ("multiple_imputation", mi),
        ("tipping_point", tipping),
        ("chronicity", lambda: chronicity_analysis(pdata, cfg)),
        ("mediation", lambda: mediation_analysis(pdata, dataset, cfg)),
        ("time_to_improvement", lambda: time_to_improvement_analysis(pdata, cfg, measure)),
        ("dose_response", lambda: dose_response_analysis(pdata, cfg)),
        ("immediate_effect", lambda: immediate_effect_analysis(dataset, cfg)),
        ("precision", lambda: precision_analysis(pdata, primary_fit, cfg)),
    ]
    entries: dict[str, dict[str, Any]] = {}
    tables: dict[str, pd.DataFrame] = {}
    for name, fn in plan:
        label, method = LABELS[name]
        if progress is not None:
            progress(label)
        entries[name], produced = guarded(label, method, fn)
        tables.update(produced)
    return entries, tables
