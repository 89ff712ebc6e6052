"""Shared content of the reports: the primary answer in words, the forest rows, and the sentences on
robustness and chronicity (the secondary table is :mod:`.secondary_text`, the model tables :mod:`.model_tables`).

Pure functions over the model's ``results.json`` (a dict) and the registry
entry of the primary measure. The sign convention of the primary estimate is
the model's: ``estimate`` is the hip-focused minus knee-focused difference in
the outcome at ``model.primary_week`` (adjusted change from baseline). For a
measure where lower is better (pain), a negative estimate means the
hip-focused group improved more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import Measure
from analysis.report.text import fmt_num, fmt_p
from analysis.results import PrimaryResult, Results

# Sensitivity analyses shown beside the primary estimate, in display order.
SENSITIVITY = (
    ("gee", "GEE (population-average)"),
    ("time_trend", "Flexible time trend (piecewise linear)"),
    ("iptw", "IPTW (inverse probability weights)"),
    ("multiple_imputation", "Multiple imputation"),
    ("tipping_point", "Tipping point (missing not at random)"),
)

NO_TIPPING = "done: no tipping point"
#: a sensitivity analysis that failed its own diagnostic (IPTW weights that do not balance the groups): its
#: estimate is shown but counted neither for nor against the headline
INCONCLUSIVE = "inconclusive"


def iptw_unbalanced(results: Results) -> bool:
    """The IPTW analysis was done but its weights did not balance the groups (its own diagnostic failed)."""
    entry = results.secondary.get("iptw")
    return entry is not None and entry.done and entry.numbers.get("balanced") is False


def iptw_balance_text(results: Results) -> str:
    """'largest weighted |SMD| 0.24, target 0.1' for the IPTW analysis (empty when there is none)."""
    entry = results.secondary.get("iptw")
    if entry is None:
        return ""
    n = entry.numbers
    return (
        f"largest standardised difference after weighting {fmt_num(n.get('max_abs_smd_weighted'))}, "
        f"target below {fmt_num(n.get('smd_target'), 1)}"
    )


def as_float(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def ci_crosses_zero(lo: Any, hi: Any) -> bool:
    lo, hi = as_float(lo), as_float(hi)
    return not (math.isfinite(lo) and math.isfinite(hi)) or (lo <= 0 <= hi)


def ci_text(d: dict[str, Any]) -> str:
    return f"{fmt_num(d.get('estimate'))} (95% CI {fmt_num(d.get('ci_low'))} to {fmt_num(d.get('ci_high'))})"


def primary_sentence(primary: PrimaryResult, measure: Measure, week: float, short: str = "NPRS") -> str:
    """The primary answer in one honest sentence, following the sign and the CI.

    Says "more" or "less" improvement only when the CI excludes 0, and "no clear
    difference" otherwise; says the fit failed (and why) with no estimate when it did.
    """
    if not primary.ok:
        reason = primary.reason or "no reason was recorded"
        return f"The main comparison could not be estimated reliably, so no estimate is shown: {reason}."
    text = _primary_sentence(primary, measure, week, short)
    if primary.status == "fallback":
        text += (
            " This comes from a simpler model (random intercept only): the planned model with a random "
            "slope per client could not be fitted reliably, so the CI may be too narrow."
        )
    return text


def _primary_sentence(primary: PrimaryResult, measure: Measure, week: float, short: str) -> str:
    est, lo, hi = as_float(primary.estimate), as_float(primary.ci_low), as_float(primary.ci_high)
    sign = -1.0 if measure.lower_is_better else 1.0
    # "improvement difference": positive = hip-focused improved more
    imp, imp_lo, imp_hi = sign * est, min(sign * lo, sign * hi), max(sign * lo, sign * hi)
    ci = f"95% CI {fmt_num(lo)} to {fmt_num(hi)}"
    when = f"by week {week:g}"
    if imp_lo > 0:
        return (
            f"Clients whose care started hip-focused improved by {fmt_num(imp, 1)} more {short} points "
            f"{when} than clients whose care started knee-focused (difference {fmt_num(est)}, {ci})."
        )
    if imp_hi < 0:
        return (
            f"Clients whose care started hip-focused improved by {fmt_num(-imp, 1)} {short} points less "
            f"{when} than clients whose care started knee-focused (difference {fmt_num(est)}, {ci})."
        )
    more = "more" if imp > 0 else "less"
    return (
        f"There was no clear difference {when} between clients whose care started hip-focused and "
        f"knee-focused: the estimate is {fmt_num(abs(imp), 1)} {short} points {more} improvement with "
        f"hip-focused care, but the {ci} includes no difference, so either group may do better."
    )


FOREST_COLUMNS = ["label", "estimate", "ci_low", "ci_high", "primary", "status", "reason"]


def _forest_row(
    label: str, numbers: Mapping[str, Any] | pd.Series | None, *, primary: bool, status: str, reason: str
) -> dict[str, Any]:
    """One row of the forest table: estimate, ci_low and ci_high from ``numbers`` (NaN where absent or None)."""
    numbers = {} if numbers is None else numbers
    return dict(
        label=label,
        estimate=as_float(numbers.get("estimate")),
        ci_low=as_float(numbers.get("ci_low")),
        ci_high=as_float(numbers.get("ci_high")),
        primary=primary,
        status=status,
        reason=reason,
    )


def forest_rows(results: Results, tipping: pd.DataFrame | None = None) -> pd.DataFrame:
    """The primary estimate and each sensitivity analysis, for the forest plot and its table.

    Returns
    -------
    DataFrame with label, estimate, ci_low, ci_high, primary (bool), status, reason.
    """
    primary = results.primary
    rows = [
        _forest_row(
            "Primary: mixed model",
            primary.model_dump() if primary.ok else None,
            primary=True,
            status=primary.status,
            reason=primary.reason,
        )
    ]
    for key, label in SENSITIVITY:
        entry = results.secondary.get(key)
        s = {} if entry is None else entry.model_dump()
        status: str = "missing" if entry is None else entry.status
        if key == "tipping_point" and not math.isfinite(as_float(s.get("estimate"))):
            # The tipping point has no estimate of its own: show the delta-adjusted analysis at the delta
            # where the conclusion changes. With no such delta (nothing to tip, or not reached) there is
            # nothing honest to plot; the secondary table says why.
            delta = as_float(s.get("tipping_delta"))
            if tipping is None or tipping.empty or not math.isfinite(delta):
                # done, but with nothing to tip: say so in the plot and the table alike
                done = s.get("status") == "done"
                reason = str(s.get("reason") or s.get("conclusion") or "")
                rows.append(
                    _forest_row(label, None, primary=False, status=NO_TIPPING if done else status, reason=reason)
                )
                continue
            t = tipping.iloc[int(np.nanargmin((tipping["delta"] - delta).abs().to_numpy()))]
            label = f"Tipping point, δ = {delta:g}"
            rows.append(_forest_row(label, t, primary=False, status=status, reason=str(s.get("reason") or "")))
            continue
        reason = str(s.get("reason") or "")
        if key == "iptw" and iptw_unbalanced(results):
            # no digits: peers see the reason too (numbers are in the balance table)
            status, reason = INCONCLUSIVE, "the weights did not balance the groups (see the balance table)"
        rows.append(_forest_row(label, s, primary=False, status=status, reason=reason))
    return pd.DataFrame(rows, columns=FOREST_COLUMNS)


ADDRESSES = {
    "gee": "the model's assumptions about the random effects",
    "time_trend": "the shape of the time trend",
    "iptw": "confounding by the measured covariates",
    "multiple_imputation": "clients who stopped coming (dropout)",
    "tipping_point": "dropout that depends on unrecorded outcomes",
}


def robustness_sentence(results: Results, forest: pd.DataFrame) -> str:
    """One sentence, generated from the results, on whether the sensitivity analyses back the headline.

    Counts the sensitivity analyses with an estimate whose CI includes no difference and names what each
    of those addresses. An analysis that failed its own diagnostic (status :data:`INCONCLUSIVE`: IPTW
    weights that did not balance the groups) is counted neither for nor against the headline, and the
    sentence says so. Never lets the headline sound surer than its sensitivity analyses.
    """
    primary = results.primary
    if not primary.ok:
        return "No sensitivity analysis can confirm a headline that could not be estimated."
    rows = forest[~forest["primary"].astype(bool)]
    rows = rows[np.isfinite(rows["estimate"].astype(float)) & np.isfinite(rows["ci_low"].astype(float))]
    inconclusive = rows[rows["status"] == INCONCLUSIVE]
    rows = rows[rows["status"] != INCONCLUSIVE]
    balance = ""
    if not inconclusive.empty or iptw_unbalanced(results):
        balance = (
            f" The weighted (IPTW) analysis is inconclusive and not counted either way: its weights did not "
            f"balance the groups ({iptw_balance_text(results)}), so it is no check on confounding."
        )
    if rows.empty:
        return "No sensitivity analysis gave an estimate to compare with the headline." + balance
    keys = {label: key for key, label in SENSITIVITY}
    crossing = rows[(rows["ci_low"].astype(float) <= 0) & (rows["ci_high"].astype(float) >= 0)]
    primary_crosses = ci_crosses_zero(primary.ci_low, primary.ci_high)
    n, k = len(rows), len(crossing)

    def named(frame: pd.DataFrame) -> str:
        return "; ".join(
            f"{str(r.label).split(':')[0]} {fmt_num(r.estimate)} ({fmt_num(r.ci_low)} to {fmt_num(r.ci_high)})"
            for r in frame.itertuples()
        )

    if primary_crosses:
        if k == n:
            return f"All {n} sensitivity analyses also include no difference ({named(rows)})." + balance
        return (
            f"{n - k} of {n} sensitivity analyses exclude no difference ({named(rows.drop(crossing.index))}) "
            "although the headline does not: the evidence is mixed." + balance
        )
    if k == 0:
        return f"All {n} sensitivity analyses point the same way and exclude no difference ({named(rows)})." + balance
    threats = sorted({ADDRESSES[keys[label]] for label in crossing["label"] if keys.get(label) in ADDRESSES})
    sensitive = f"; the result is sensitive to {' and to '.join(threats)}" if threats else ""
    verb = "includes" if k == 1 else "include"
    return (
        f"{k} of {n} sensitivity analyses {verb} no difference ({named(crossing)}){sensitive}: read the "
        "headline as uncertain." + balance
    )


def chronicity_sentence(results: Results, measure_short: str = "NPRS") -> str:
    """The seed question, "does it depend on how long the pain has lasted?", answered in one sentence."""
    entry = results.secondary.get("chronicity")
    if entry is None or not entry.done:
        reason = entry.reason if entry is not None else None
        return "Whether the effect depends on how long the pain had lasted could not be estimated" + (
            f": {reason}." if reason else "."
        )
    c = entry.numbers
    inter = c.get("interaction") or {}
    at = c.get("at_symptom_weeks") or {}
    parts = [f"{fmt_num(at[w].get('estimate'), 1)} at {w} weeks" for w in sorted(at, key=float)]
    lo, hi = as_float(inter.get("ci_low")), as_float(inter.get("ci_high"))
    per_log = as_float(inter.get("change_at_primary_week_per_log_unit"))
    if math.isfinite(lo) and (lo > 0 or hi < 0):
        way = "smaller" if per_log > 0 else "larger"
        verdict = (
            f"Yes, probably: the benefit of hip-focused care was {way} the longer the pain had lasted "
            f"(interaction {ci_text(inter)}, p {fmt_p(inter.get('p_value'))})"
        )
    else:
        p_text = "p < 0.001" if as_float(inter.get("p_value")) < 0.001 else "p = " + fmt_num(inter.get("p_value"), 2)
        verdict = (
            f"No clear dependence on how long the pain had lasted (interaction {ci_text(inter)}, {p_text}): "
            "the data cannot tell whether longer-lasting pain responds differently"
        )
    return f"{verdict}; estimated difference in {measure_short} change (hip − knee): {', '.join(parts)}."
