"""Mechanism: mediation by hip internal-rotation gain, dose-response, and the immediate within-session effect."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import patsy
import statsmodels.formula.api as smf
from scipy import stats

from analysis.model.endpoint import client_endpoint, rhs, usable_terms, window
from analysis.model.entries import FitFailed, NotEstimable, fit_checked
from analysis.model.fit import DF_METHOD_LABELS, fit_mixed, fit_mixed_with_fallback, fit_options, linear_contrast, wald
from analysis.model.prepare import PrimaryData
from analysis.params_schema import ModelParams

HIP_IR = ("hip_ir_left_deg", "hip_ir_right_deg")
SCATTER_COLUMNS = ["group", "ir_gain", "pain_change"]
IMMEDIATE_COLUMNS = ["focus", "n", "mean_change", "ci_low", "ci_high"]


# --------------------------------------------------------------------------- mediation


def ir_gain(dataset: pd.DataFrame, clients: pd.Index, cfg: ModelParams) -> pd.DataFrame:
    """Client-level hip IR gain at the endpoint: mean over sides of the ``pre`` change from each side's baseline.

    The session used is the one closest to the primary week within the endpoint
    window (ties: the later) among sessions with at least one side measured.

    Returns
    -------
    DataFrame indexed by client_id with ``ir_gain`` (degrees) and ``ir_baseline``
    (mean of the sides' baseline values).
    """
    pw = cfg.primary_week
    low, high = window(cfg)
    ir = dataset[dataset["measure"].isin(HIP_IR) & (dataset["timing"] == "pre") & dataset["client_id"].isin(clients)]
    base = ir[ir["session_number"] == 1].groupby("client_id")["value"].mean().rename("ir_baseline")
    ir = ir[
        (ir["weeks_since_first"] >= low)
        & (ir["weeks_since_first"] <= high)
        & (ir["session_number"] > 1)
        & ir["change_from_baseline"].notna()
    ]
    per_session = (
        ir.groupby(["client_id", "session_id"], sort=True)
        .agg(ir_gain=("change_from_baseline", "mean"), week=("weeks_since_first", "first"))
        .reset_index()
    )
    per_session = per_session.assign(dist=(per_session["week"] - pw).abs()).sort_values(
        ["client_id", "dist", "week"], ascending=[True, True, False], kind="mergesort"
    )
    gain = per_session.drop_duplicates("client_id").set_index("client_id")["ir_gain"]
    return pd.concat([gain, base], axis=1, join="inner")


def _ols_coefs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    beta: np.ndarray = np.linalg.lstsq(x, y, rcond=None)[0]
    return beta


def _boot_coefs(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """OLS coefficients of bootstrap resamples given as row counts (n_boot, n), from the weighted cross-products.

    The rows drawn with replacement enter OLS only through ``X'WX`` and ``X'Wy`` (W = the counts), so each
    resample costs O(n p^2) once, not a least-squares solve of an n x p matrix. A resample whose ``X'WX`` is
    singular (a covariate level not drawn) falls back to ``lstsq`` on its rows, as before.
    """
    xx = np.einsum("np,nq->npq", x, x).reshape(len(x), -1)
    cross = (counts @ xx).reshape(len(counts), x.shape[1], x.shape[1])
    xty = counts @ (x * y[:, None])
    out = np.empty((len(counts), x.shape[1]))
    for k in range(len(counts)):
        try:
            np.linalg.cholesky(cross[k])
            out[k] = np.linalg.solve(cross[k], xty[k])
        except np.linalg.LinAlgError:
            idx = np.repeat(np.arange(len(x)), counts[k].astype(int))
            out[k] = _ols_coefs(x[idx], y[idx])
    return out


def mediation_analysis(
    pdata: PrimaryData, dataset: pd.DataFrame, cfg: ModelParams
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Product-of-coefficients mediation of the pain change at the endpoint by the hip IR gain.

    Mediator model: ir_gain ~ hip + ir_baseline + baseline_y + covariates (a = hip).
    Outcome model: change ~ hip + ir_gain + ir_baseline + baseline_y + covariates
    (b = ir_gain, direct = hip). Indirect = a x b; total = direct + indirect;
    percentile bootstrap over clients (``mediation_boot`` resamples, seeded).

    Returns
    -------
    (numbers, {"hip_ir_vs_pain": DataFrame with :data:`SCATTER_COLUMNS`}) --
    one row per client, no client ids.
    """
    alpha = cfg.alpha
    ep = client_endpoint(pdata.data, cfg).set_index("client_id")
    ep = ep[ep["observed"] == 1]
    ir = ir_gain(dataset, ep.index, cfg)
    df = ep.join(ir, how="inner").reset_index()
    n1, n0 = int((df["hip"] == 1).sum()), int((df["hip"] == 0).sum())
    if min(n1, n0) < 5:
        raise NotEstimable(
            f"too few clients with both pain and hip IR at the endpoint (hip-focused {n1}, "
            f"comparator {n0}; need 5 each)"
        )
    df, covs, notes = usable_terms(df, pdata.covariates)
    m_formula = "ir_gain ~ " + rhs("hip", "ir_baseline", "baseline_y", covs)
    y_formula = "change ~ " + rhs("hip", "ir_gain", "ir_baseline", "baseline_y", covs)
    m_res = fit_checked("mediator model", lambda: smf.ols(m_formula, data=df).fit())
    y_res = fit_checked("outcome model", lambda: smf.ols(y_formula, data=df).fit())
    a, b, direct = float(m_res.params["hip"]), float(y_res.params["ir_gain"]), float(y_res.params["hip"])

    # bootstrap on design matrices built once (resampling rows), for speed
    ym, xm = patsy.dmatrices(m_formula, df, return_type="dataframe")
    yy, xy = patsy.dmatrices(y_formula, df, return_type="dataframe")
    ia, ib, idir = list(xm.columns).index("hip"), list(xy.columns).index("ir_gain"), list(xy.columns).index("hip")
    xm, ym, xy, yy = xm.to_numpy(), ym.to_numpy().ravel(), xy.to_numpy(), yy.to_numpy().ravel()
    rng = np.random.default_rng(cfg.seed)
    n, n_boot = len(df), cfg.mediation_boot
    boots = np.empty((n_boot, 3))
    chunk = max(1, 2_000_000 // max(n, 1))  # resamples per block: bounds the (block, n) count matrix
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        counts = np.array([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(start, stop)], dtype=float)
        bm, by = _boot_coefs(xm, ym, counts), _boot_coefs(xy, yy, counts)
        boots[start:stop] = np.column_stack([bm[:, ia] * by[:, ib], by[:, idir], bm[:, ia]])
    indirect_b, direct_b = boots[:, 0], boots[:, 1]
    total_b = indirect_b + direct_b
    with np.errstate(divide="ignore", invalid="ignore"):
        prop_b = np.where(total_b != 0, indirect_b / total_b, np.nan)
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]

    def pct(values: np.ndarray) -> list[float]:
        v = values[np.isfinite(values)]
        return [float(x) for x in np.percentile(v, q)] if len(v) else [float("nan")] * 2

    total = a * b + direct
    scatter = (
        df.assign(group=np.where(df["hip"] == 1, "hip_focused", "comparator"), pain_change=df["change"])[
            SCATTER_COLUMNS
        ]
        .sort_values(SCATTER_COLUMNS, kind="mergesort")
        .reset_index(drop=True)
    )
    return {
        "n_clients": n,
        "n_hip_focused": n1,
        "n_comparator": n0,
        "a_path": {"estimate": a, "ci": pct(boots[:, 2]), "per": "degrees of IR gain, hip-focused minus comparator"},
        "b_path": wald(b, float(y_res.bse["ir_gain"]), alpha) | {"per": "NPRS change per degree of IR gain"},
        "indirect_effect": {
            "estimate": a * b,
            "ci_low": pct(indirect_b)[0],
            "ci_high": pct(indirect_b)[1],
            "label": "natural indirect effect (under the assumptions below)",
        },
        "direct_effect": {
            "estimate": direct,
            "ci_low": pct(direct_b)[0],
            "ci_high": pct(direct_b)[1],
            "label": "natural direct effect (under the assumptions below)",
        },
        "total_effect": {"estimate": total, "ci_low": pct(total_b)[0], "ci_high": pct(total_b)[1]},
        "proportion_mediated": {
            "estimate": (a * b / total) if total != 0 else None,
            "ci_low": pct(prop_b)[0],
            "ci_high": pct(prop_b)[1],
        },
        "n_boot": n_boot,
        "mediator_formula": m_formula,
        "outcome_formula": y_formula,
        "notes": notes
        + [
            (
                "mediation assumes no unmeasured confounding of the mediator-outcome relation (and of exposure-"
                "mediator and exposure-outcome), no mediator-outcome confounder affected by the exposure, and no "
                "exposure-mediator interaction; with linear models the product a x b is then the natural indirect "
                "effect. Here group is not randomised, so these assumptions are strong."
            ),
            (
                "mediator and outcome are measured at the same endpoint session, so the order mediator -> outcome "
                "is assumed, not observed."
            ),
            (
                "measurement error in the mediator (a change between two noisy goniometer readings) attenuates the "
                "b path, so the indirect effect tends to be underestimated and the direct effect overestimated."
            ),
            (
                "percentile bootstrap CIs over clients; the proportion mediated is unstable when the total effect is "
                "near 0."
            ),
        ],
    }, {"hip_ir_vs_pain": scatter}


# --------------------------------------------------------------------------- dose-response


def dose_response_analysis(pdata: PrimaryData, cfg: ModelParams) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Mixed model of pain on the number of earlier hip-focused sessions (time-varying exposure).

    ``prior_hip_sessions`` counts hip-focused sessions *before* the current one:
    pain is measured before treatment, so this session's focus cannot have
    affected it yet. Model: y ~ week + hip + prior_hip_sessions + covariates,
    random intercept and slope on week (random intercept only as fallback).
    """
    alpha = cfg.alpha
    hip_foci = list(cfg.exposure.hip_focused)
    data = pdata.data.assign(
        prior_hip_sessions=pdata.data["cum_hip_sessions"] - pdata.data["focus"].isin(hip_foci).astype("int64")
    )
    if data["prior_hip_sessions"].nunique() < 2:
        raise NotEstimable("no variation in the number of earlier hip-focused sessions")
    formula = "y ~ " + rhs("week", "hip", "prior_hip_sessions", pdata.covariates)
    fit = fit_mixed_with_fallback(data, formula, "client_id", "~week", **fit_options(cfg))
    if not fit.ok:
        raise FitFailed(f"dose-response model: {fit.reason}")
    est = linear_contrast(fit, {"prior_hip_sessions": 1.0}, alpha)
    return {
        **est,
        "per": "NPRS points per additional earlier hip-focused session",
        "formula": formula,
        "fit_status": fit.status,
        "fit_reason": fit.reason or None,
        "optimizer": fit.optimizer,
        "n_clients": fit.n_groups,
        "n_obs": fit.n_obs,
        "notes": [
            (
                "time-varying exposure: whether a later session is hip-focused may depend on how pain has responded "
                "so far (time-varying confounding affected by earlier treatment); a conventional mixed model does "
                "not handle this and the estimate can be biased in either direction (g-methods would be needed)."
            ),
            (
                "the baseline group (hip) is adjusted for, so the estimate comes from how the count accumulates "
                "within and across clients, not only from the group difference."
            ),
        ],
    }, {}


# --------------------------------------------------------------------------- immediate effect


def immediate_effect_analysis(
    dataset: pd.DataFrame, cfg: ModelParams
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Within-session change (post - pre) of the primary measure by the session's focus.

    Uses every session in the dataset with both a pre and a post value. Hip vs
    knee difference from a mixed model with a random intercept per client,
    adjusted for the (centred) pre value because larger drops are possible from
    higher pain.

    Returns
    -------
    (numbers, {"immediate": DataFrame with :data:`IMMEDIATE_COLUMNS`})
    """
    alpha = cfg.alpha
    m = dataset[dataset["measure"] == cfg.measure]
    wide = m.pivot_table(
        index=["client_id", "session_id", "focus"], columns="timing", values="value", aggfunc="first", observed=True
    ).reset_index()
    if not {"pre", "post"} <= set(wide.columns):
        raise NotEstimable(f"no session has both a pre and a post {cfg.measure} value")
    wide = wide.dropna(subset=["pre", "post"]).assign(change=lambda d: d["post"] - d["pre"])
    if wide.empty:
        raise NotEstimable(f"no session has both a pre and a post {cfg.measure} value")
    rows, summary = [], {}
    for focus, g in wide.groupby("focus", sort=True):
        n, mean = len(g), float(g["change"].mean())
        sd = float(g["change"].std(ddof=1)) if n > 1 else float("nan")
        half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / np.sqrt(n) if n > 1 else float("nan")
        rows.append({"focus": str(focus), "n": n, "mean_change": mean, "ci_low": mean - half, "ci_high": mean + half})
        summary[str(focus)] = {"n": n, "mean": mean, "sd": sd, "n_clients": int(g["client_id"].nunique())}
    table = pd.DataFrame(rows, columns=IMMEDIATE_COLUMNS)

    d = wide[wide["focus"].isin(["hip", "knee", "hip_and_knee"])]
    out: dict[str, Any] = {
        "by_focus": summary,
        "n_sessions": int(len(wide)),
        "n_clients": int(wide["client_id"].nunique()),
        "hip_vs_knee": None,
        "model_status": "not_estimable",
        "model_reason": None,
    }
    if (d["focus"] == "hip").sum() < 2 or (d["focus"] == "knee").sum() < 2:
        out["model_reason"] = "fewer than 2 hip-focused or knee-focused sessions with pre and post values"
        return out | {"notes": ["descriptive table only: " + out["model_reason"]]}, {"immediate": table}
    d = d.assign(
        focus_hip=(d["focus"] == "hip").astype(float),
        focus_hip_and_knee=(d["focus"] == "hip_and_knee").astype(float),
        pre_c=d["pre"] - d["pre"].mean(),
    )
    terms = ["focus_hip"] + (["focus_hip_and_knee"] if d["focus_hip_and_knee"].sum() >= 2 else [])
    if d["focus_hip_and_knee"].sum() < 2:
        d = d[d["focus"] != "hip_and_knee"]
    formula = "change ~ " + rhs(terms, "pre_c")
    fit = fit_mixed(d, formula, "client_id", None, **fit_options(cfg))
    if fit.ok:
        out.update(
            model_status="ok",
            optimizer=fit.optimizer,
            method=f"mixed model, random intercept per client (REML), {DF_METHOD_LABELS[fit.df_method]}",
        )
        effects = {t: linear_contrast(fit, {t: 1.0}, alpha) for t in terms}
    else:
        # A between-client variance of ~0 puts the mixed model on the boundary; the model then reduces to
        # OLS, whose SEs are made cluster-robust by client.
        res = fit_checked(
            "immediate-effect OLS",
            lambda: smf.ols(formula, data=d).fit(
                cov_type="cluster", cov_kwds={"groups": pd.factorize(d["client_id"])[0]}
            ),
        )
        out.update(
            model_status="fallback",
            model_reason=f"mixed model failed ({fit.reason}); OLS with cluster-robust SEs by client instead",
            method="OLS with cluster-robust (by client) SEs",
        )
        effects = {t: wald(float(res.params[t]), float(res.bse[t]), alpha) for t in terms}
    out["hip_vs_knee"] = effects["focus_hip"]
    if "focus_hip_and_knee" in effects:
        out["hip_and_knee_vs_knee"] = effects["focus_hip_and_knee"]
    out.update(
        formula=formula,
        notes=[
            (
                "change = post - pre within the session (negative = pain fell); the table's CIs treat sessions as "
                "independent, the mixed-model difference does not."
            ),
            (
                "post-treatment pain is reported to the treating therapist straight after treatment: expectation and "
                "politeness can inflate immediate effects."
            ),
        ],
    )
    return out, {"immediate": table}
