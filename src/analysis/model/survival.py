"""Time to a clinically important improvement: Kaplan-Meier per group and the log-rank test.

Event: the first later session at which the primary outcome (measured before
treatment) has improved from baseline by the measure's MCID (points or
percent, either; :func:`analysis.model.responders.is_responder`). Event time
is that session's week. Clients who never reach it are censored at their last
observed week within the follow-up window. Because improvement is only seen
at sessions, event times are interval-censored in reality; treating them as
exact slightly favours whoever is seen more often.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.duration.survfunc import SurvfuncRight, survdiff

from analysis.contract import Measure
from analysis.model.entries import NotEstimable
from analysis.model.prepare import PrimaryData
from analysis.model.responders import GROUPS, is_responder
from analysis.params_schema import ModelParams

KM_COLUMNS = ["group", "week", "survival", "ci_low", "ci_high", "at_risk"]


def event_times(data: pd.DataFrame, measure: Measure) -> pd.DataFrame:
    """One row per client: ``client_id``, ``hip``, ``time`` (weeks), ``event`` (1 = reached the MCID)."""
    later = data[data["week"] > 0]
    hit = later.assign(hit=is_responder(later["baseline_y"], later["y"], measure))
    first = hit[hit["hit"] == 1].groupby("client_id")["week"].min().rename("event_week")
    last = data.groupby("client_id").agg(hip=("hip", "first"), last_week=("week", "max"))
    out = last.join(first, how="left")
    out["event"] = out["event_week"].notna().astype("int64")
    out["time"] = out["event_week"].fillna(out["last_week"]).astype(float)
    return out.reset_index()[["client_id", "hip", "time", "event"]]


def km_table(times: np.ndarray, events: np.ndarray, group: str, alpha: float) -> tuple[pd.DataFrame, SurvfuncRight]:
    """Kaplan-Meier step points (starting at week 0, survival 1) with pointwise log-log CIs."""
    sf = SurvfuncRight(times, events)
    z = stats.norm.ppf(1 - alpha / 2)
    s, se = np.asarray(sf.surv_prob, float), np.asarray(sf.surv_prob_se, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # complementary log-log transform keeps the interval inside 0-1
        se_ll = se / (s * np.abs(np.log(s)))
        lo, hi = s ** np.exp(z * se_ll), s ** np.exp(-z * se_ll)
    ok = (s > 0) & (s < 1) & np.isfinite(se_ll)
    lo, hi = np.where(ok, lo, np.nan), np.where(ok, hi, np.nan)
    table = pd.DataFrame(
        {
            "group": group,
            "week": np.r_[0.0, sf.surv_times],
            "survival": np.r_[1.0, s],
            "ci_low": np.r_[1.0, lo],
            "ci_high": np.r_[1.0, hi],
            "at_risk": np.r_[len(times), sf.n_risk].astype("int64"),
        }
    )
    return table[KM_COLUMNS], sf


def _finite_or_none(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def time_to_improvement_analysis(
    pdata: PrimaryData, cfg: ModelParams, measure: Measure
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Kaplan-Meier curves of 'not yet improved by the MCID' per group, medians and the log-rank test.

    Returns
    -------
    (numbers, {"km": DataFrame with :data:`KM_COLUMNS`}) ; ``survival`` is the
    share not yet improved.
    """
    alpha = cfg.alpha
    ev = event_times(pdata.data, measure)
    tables, by_group = [], {}
    for g in (1, 0):
        sub = ev[ev["hip"] == g]
        if len(sub) < 2:
            raise NotEstimable(f"fewer than 2 {GROUPS[g]} clients")
        table, sf = km_table(sub["time"].to_numpy(float), sub["event"].to_numpy(float), GROUPS[g], alpha)
        tables.append(table)
        if sub["event"].sum() == 0:
            median: float | None = None
            ci: tuple[float | None, ...] = (None, None)
        else:
            median = _finite_or_none(sf.quantile(0.5))
            # statsmodels takes log(-log S) of every step; S = 0 at the last event gives -inf there,
            # which only marks that step as unusable for the interval (numpy warning, not an error)
            with np.errstate(divide="ignore", invalid="ignore"):
                ci = tuple(_finite_or_none(v) for v in sf.quantile_ci(0.5, alpha=alpha))
        by_group[GROUPS[g]] = {
            "n": int(len(sub)),
            "events": int(sub["event"].sum()),
            "median_weeks": median,
            "median_ci_low": ci[0],
            "median_ci_high": ci[1],
            "median_reached": median is not None,
        }
    if ev["event"].sum() == 0:
        raise NotEstimable("no client reached the MCID within the follow-up window")
    chi2, p = survdiff(ev["time"].to_numpy(float), ev["event"].to_numpy(float), ev["hip"].to_numpy())
    return {
        "by_group": by_group,
        "logrank_chi2": float(chi2),
        "logrank_p_value": float(p),
        "notes": [
            (
                "survival = share of clients not yet improved by the MCID; a median of None means fewer than "
                "half improved within follow-up (not reached); an upper CI limit of None is unbounded."
            ),
            "unadjusted comparison (Kaplan-Meier, log-rank): confounding by indication is not addressed.",
            (
                "event times are the weeks of the sessions at which improvement was first seen (interval "
                "censoring ignored)."
            ),
        ],
    }, {"km": pd.concat(tables, ignore_index=True)}
