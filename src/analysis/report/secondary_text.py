"""The secondary analyses in words: one row per analysis (label, headline result, status, reason) for
the reports' secondary table, and the text cleaned for peers.
"""

from __future__ import annotations

import math
import re
from typing import Any

from analysis.report.summary import NO_TIPPING, as_float, ci_text
from analysis.report.text import fmt_num
from analysis.results import Results

SECONDARY_LABELS = {
    "responders": "Responders (MCID) by group",
    "gee": "GEE (population-average)",
    "iptw": "IPTW (propensity weights)",
    "multiple_imputation": "Multiple imputation",
    "tipping_point": "Tipping point",
    "chronicity": "Effect by chronicity",
    "mediation": "Mediation by hip internal rotation",
    "time_to_improvement": "Time to MCID improvement",
    "dose_response": "Dose response (hip-focused sessions)",
    "immediate_effect": "Immediate (within-session) effect",
    "precision": "Precision / sample size",
}


def secondary_rows(results: Results) -> list[dict[str, str]]:
    """One row per secondary analysis: label, status, whether exploratory, result in words.

    The result shows estimate and CI when the analysis gives one, else its reason or status.
    """
    out = []
    for key, entry in sorted(results.secondary.items()):
        s = entry.model_dump()  # the analysis's own numbers, by the names it wrote them under
        name, est = headline(s)
        specific = result_text(key, s) if entry.done else None
        if specific:
            text = specific
        elif est is not None:
            text = (
                f"{name + ' ' if name else ''}{fmt_num(est.get('estimate'))} "
                f"(95% CI {fmt_num(est.get('ci_low'))} to {fmt_num(est.get('ci_high'))})"
            )
        else:
            text = str(s.get("summary") or entry.reason or "see table")
        status: str = entry.status
        if key == "tipping_point" and status == "done" and s.get("tipping_delta") is None:
            status = NO_TIPPING  # the same words as the forest plot
        out.append(
            dict(
                key=key,
                label=entry.label or SECONDARY_LABELS.get(key, key),
                status=status,
                exploratory="yes" if entry.exploratory else "no",
                method=entry.method,
                result=text,
                reason=entry.reason or "",
            )
        )
    return out


# Where a secondary analysis keeps its headline when it has no top-level estimate, in order of preference.
HEADLINE_KEYS = (
    "risk_difference",
    "adjusted_risk_difference",
    "hazard_ratio",
    "odds_ratio",
    "indirect_effect",
    "direct_effect",
    "slope_difference",
)


def headline(entry: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The headline estimate of a secondary analysis: ('', entry) if it has a top-level estimate,
    else (name, nested dict) for the first of :data:`HEADLINE_KEYS` with an estimate, else ('', None)."""
    if math.isfinite(as_float(entry.get("estimate"))):
        return "", entry
    for key in HEADLINE_KEYS:
        sub = entry.get(key)
        if isinstance(sub, dict) and math.isfinite(as_float(sub.get("estimate"))):
            return key.replace("_", " "), sub
    return "", None


def peer_text(text: str) -> str:
    """Free text from the model step (reasons, notes) as peers may see it.

    Such text can quote counts ("hip-focused 3, comparator 2") that no gate can recognise as
    counts, so any text holding a digit is replaced by a pointer to the clinic's own report.
    """
    if text and re.search(r"\d", text):
        return "details in the clinic's own report"
    return text


def result_text(key: str, entry: dict[str, Any]) -> str | None:
    """A one-line result for analyses whose headline is not a single estimate.

    Only estimates, p-values and durations appear here, never counts, so the
    same text is safe for the peer report.
    """
    if key == "chronicity":
        at = entry.get("at_symptom_weeks") or {}
        parts = [f"{w} wk: {fmt_num(at[w].get('estimate'))}" for w in sorted(at, key=float)]
        inter = entry.get("interaction") or {}
        p = inter.get("p_value")
        return (
            (
                "difference at the primary week by symptom duration — "
                + "; ".join(parts)
                + (f" (interaction p = {fmt_num(p, 2)})" if p is not None else "")
            )
            if parts
            else None
        )
    if key == "e_value":
        if entry.get("e_value") is None:
            return None
        return (
            f"E-value {fmt_num(entry['e_value'], 2)} for the estimate, "
            f"{fmt_num(entry.get('e_value_ci'), 2)} for the CI limit nearer no difference"
        )
    if key == "immediate_effect":
        hk = entry.get("hip_vs_knee")
        return f"hip vs knee session, post − pre difference {ci_text(hk)}" if isinstance(hk, dict) else None
    if key == "precision":
        mdd = entry.get("minimum_detectable_difference")
        if mdd is None:
            return None
        return (
            f"smallest difference detectable with {fmt_num(100 * as_float(entry.get('power')), 0)}% power: "
            f"{fmt_num(mdd)} points; {entry.get('n_per_group_for_target')} clients per group needed to detect "
            f"{fmt_num(entry.get('target_difference'), 1)} point(s)"
        )
    if key == "time_to_improvement":
        groups = entry.get("by_group") or {}
        parts = []
        for g, label in (("hip_focused", "hip-focused"), ("comparator", "knee-focused")):
            d = groups.get(g) or {}
            med = fmt_num(d.get("median_weeks"), 1) + " wk" if d.get("median_reached") else "not reached"
            parts.append(f"{label} median {med}")
        p = entry.get("logrank_p_value")
        return "; ".join(parts) + (f"; log-rank p = {fmt_num(p, 3)}" if p is not None else "")
    if key == "tipping_point":
        delta = entry.get("tipping_delta")
        if delta is not None:
            return (
                f"the conclusion changes if missing hip-focused outcomes were {fmt_num(delta, 1)} points worse "
                "than imputed"
            )
        conclusion = str(entry.get("conclusion") or "")
        return conclusion if conclusion and not re.search(r"\d", conclusion) else None
    return None


# Sensitivity analyses that address a named threat to the headline (for the robustness sentence).
