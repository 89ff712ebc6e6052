"""The answer in clinical terms: the headline set against the change clients notice, the share of clients
who reached it, and the technical words (IPTW, SMD, df) explained one click away.

Pure functions of the typed results and the registry entry of the measure; both reports use them beside
the headline sentence (:mod:`analysis.report.summary`). The MCID comes from the measures registry
(``config/measures.yaml``), and so does the minimal detectable change (``mdc_points``) where the registry
has one: it says what a single client's change can show, while the group difference is judged by the MCID.
"""

from __future__ import annotations

import math

from analysis.contract import Measure
from analysis.report.summary import as_float, iptw_balance_text, iptw_unbalanced
from analysis.report.text import fmt_num, fmt_p_stat
from analysis.results import Results


def _size_words(ratio: float) -> str:
    """How an absolute difference compares with the MCID, in words."""
    if ratio < 0.25:
        return "a small fraction of"
    if ratio < 0.5:
        return "less than half of"
    if ratio < 0.9:
        return "smaller than"
    if ratio <= 1.1:
        return "about the same as"
    return "larger than"


def mcid_sentence(results: Results, measure: Measure, short: str = "NPRS") -> str:
    """The headline against the MCID: its size, and whether the CI reaches a difference clients notice."""
    p = results.primary
    mcid = measure.mcid_points
    if not p.ok or not mcid:
        return ""
    est, lo, hi = as_float(p.estimate), as_float(p.ci_low), as_float(p.ci_high)
    far = max(abs(lo), abs(hi))
    text = (
        f"How large is that? Clients notice a change of about {fmt_num(mcid, 0)} {short} points (the minimal "
        f"clinically important difference, MCID); the difference of {fmt_num(abs(est), 1)} points between the "
        f"groups is {_size_words(abs(est) / mcid)} that"
    )
    if far < mcid:
        text += (
            f", and even the end of the 95% CI farthest from no difference ({fmt_num(far, 1)} points) stays "
            "below it: a difference between the groups that clients would notice is unlikely."
        )
    else:
        text += (
            f"; the 95% CI reaches {fmt_num(far, 1)} points, so a difference clients would notice cannot be ruled out."
        )
    mdc = measure.mdc_points
    if mdc:
        text += (
            f" For one client, a change smaller than about {fmt_num(mdc, 0)} points (the minimal detectable change, "
            "MDC) may be measurement error; a difference between group averages can be smaller than that and "
            "still be real, which is why the MCID, not the MDC, is the yardstick here."
        )
    else:
        text += (
            " The measures registry records no minimal detectable change (MDC) for this measure, so the difference "
            "is set against the MCID only."
        )
    return text


def responder_sentence(results: Results, week: float, shown: bool = True) -> str:
    """Share of clients in each group who reached the MCID, the difference with its CI and, when the CI
    excludes no difference, the number needed to treat with its CI. ``shown=False``: withheld (peers)."""
    entry = results.secondary.get("responders")
    if entry is None or not entry.done:
        return ""
    if not shown:
        return "The share of clients reaching the MCID is withheld here: a small count could be worked out from it."
    n = entry.numbers
    p1, p0 = as_float(n.get("share_hip_focused")), as_float(n.get("share_comparator"))
    rd = n.get("risk_difference") or {}
    est, lo, hi = as_float(rd.get("estimate")), as_float(rd.get("ci_low")), as_float(rd.get("ci_high"))
    if not all(math.isfinite(v) for v in (p1, p0, est, lo, hi)):
        return ""
    text = (
        f"By week {week:g}, {fmt_num(100 * p1, 0)}% of hip-focused and {fmt_num(100 * p0, 0)}% of knee-focused "
        f"clients had improved by at least the MCID (difference {fmt_num(100 * est, 0)} percentage points, "
        f"95% CI {fmt_num(100 * lo, 0)} to {fmt_num(100 * hi, 0)})"
    )
    nnt = n.get("nnt") or {}
    if (lo > 0 or hi < 0) and nnt.get("nnt") is not None and nnt.get("ci_low") is not None:
        more = "one more" if lo > 0 else "one fewer"
        text += (
            f": about {fmt_num(nnt['nnt'], 0)} clients would need hip-focused rather than knee-focused care for "
            f"{more} to reach the MCID (number needed to treat {fmt_num(nnt['nnt'], 1)}, 95% CI "
            f"{fmt_num(nnt['ci_low'], 1)} to {fmt_num(nnt['ci_high'], 1)})."
        )
    else:
        text += "; the CI includes no difference, so no number needed to treat is given."
    return text


def time_trend_sentence(results: Results, week: float) -> str:
    """The headline assumes a straight-line trend; the flexible-trend estimate and whether the line is adequate."""
    entry = results.secondary.get("time_trend")
    if entry is None or not entry.done or entry.headline is None:
        # no reason quoted: it may hold counts, and peers read this sentence too (the table has it, cleaned)
        return (
            "Whether the straight-line time trend of the model is adequate could not be checked (see the "
            "flexible time trend in the table of secondary analyses)."
        )
    h = entry.headline
    n = entry.numbers
    knots = ", ".join(f"{float(k):g}" for k in n.get("knots") or [])
    lrt = n.get("likelihood_ratio") or {}
    text = (
        f"The model assumes pain changes along a straight line; letting the line bend at week {knots} gives a "
        f"difference at week {week:g} of {fmt_num(h.estimate)} (95% CI {fmt_num(h.ci_low)} to {fmt_num(h.ci_high)})"
    )
    test = f"likelihood-ratio test, {fmt_p_stat(lrt.get('p_value'))}"
    if n.get("linear_adequate") is True:
        return text + f", and the bend does not improve the fit ({test}): the straight line is adequate."
    if n.get("linear_adequate") is False:
        return text + (
            f", and the bend improves the fit ({test}): the straight line is not adequate, so read the "
            "headline beside this estimate."
        )
    return text + "; no likelihood-ratio test could be made."


def technical_notes(results: Results, measure_short: str = "NPRS") -> list[str]:
    """Plain explanations of the technical terms near the headline (for a ``<details>`` block)."""
    p = results.primary
    notes = []
    if p.ok:
        df = f" (here {fmt_num(p.df, 1)})" if p.df is not None and p.df_method == "satterthwaite" else ""
        notes.append(
            "Adjusted estimate: a linear mixed model follows each client's scores over time (random intercept and "
            "slope per client) and compares the groups' average change, adjusted for the recorded differences "
            "between the clients. "
            + (
                f"Degrees of freedom (df){df}: the Satterthwaite method widens the confidence interval when few "
                "clients inform the estimate, as a t-test does for small samples."
                if p.df_method == "satterthwaite"
                else f"Confidence interval: {p.df_method_label}."
            )
        )
    iptw = results.secondary.get("iptw")
    if iptw is not None and iptw.done:
        verdict = (
            f"Here the check failed ({iptw_balance_text(results)}), so the IPTW estimate is shown as inconclusive "
            "and is counted neither for nor against the headline."
            if iptw_unbalanced(results)
            else f"Here the check passed ({iptw_balance_text(results)})."
        )
        notes.append(
            "IPTW (inverse probability of treatment weighting): each client counts with a weight that makes the two "
            "groups alike in the recorded characteristics, as if the focus of care had been chosen at random among "
            "them. SMD (standardised mean difference): the difference between the groups in a characteristic, in "
            "standard deviations; below 0.1 counts as balanced. " + verdict
        )
    notes.append(
        f"Negative differences mean the hip-focused group's {measure_short} fell more (improved more); 95% CI: the "
        "range of differences compatible with these data."
    )
    return notes
