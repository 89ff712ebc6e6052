"""Plain-language cautions for a pooled result: the words follow the numbers.

Every sentence here is computed from the fit it describes (:func:`analysis.pool.meta.rma`'s result and the
clinics' numbers), so an interval is called wide only when it is wider than the standard random-effects
(Wald) interval, and narrow or zero-width intervals are said to be so. The sentences carry no final full
stop (the console and the HTML add their own) and use ASCII ``tau^2`` so that any console can print them.

Why these cautions:

- **Few clinics (k < 5)**: with so few studies tau^2 is poorly estimated and every random-effects interval,
  Knapp-Hartung included, has unreliable coverage (Röver, Knapp & Friede 2015, BMC Med Res Methodol 15:99;
  Bender et al. 2018, Res Synth Methods 9:382).
- **tau^2 estimated as 0**: a zero estimate says the k clinics cannot tell how much they differ, not that
  they agree; the prediction interval then collapses onto the CI.
- **Identical estimates**: the Knapp-Hartung scale factor q is 0; the plain Knapp-Hartung interval would have
  zero width.
- **A clinic with few df of its own**: the pooled analysis treats each clinic's SE as known
  (see :mod:`analysis.pool.meta`), which matters most for a clinic whose own CI needs a t quantile well above z.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

FEW_CLINICS = 5  # below this, intervals from a random-effects meta-analysis are unreliable (Bender et al. 2018)
T_OVER_Z = (
    1.05  # a clinic's t quantile this much above z (df < 25 at 95%) makes its "known" SE a noticeable simplification
)


def _n(x: float) -> str:
    return f"{x:.2f}"


def width_ratio(r: dict[str, Any]) -> float:
    """Width of the pooled CI over the width of the standard random-effects (Wald) CI (``inf`` if that is 0)."""
    width = r["pooled"]["ci_high"] - r["pooled"]["ci_low"]
    wald = r["wald"]["ci_high"] - r["wald"]["ci_low"]
    return float(width / wald) if wald > 0 else float("inf")


def interval_words(r: dict[str, Any]) -> str:
    """How wide the pooled CI is, in words that follow its numbers.

    Returns
    -------
    str : e.g. ``"the 95% CI (-4.48 to 3.00) is 6.3 times as wide as the standard random-effects interval
    (-1.07 to -0.12)"``; ``"... has zero width ..."`` or ``"... is narrower than ..."`` when it is.
    """
    p, w = r["pooled"], r["wald"]
    ci = f"the {100 * (1 - r['alpha']):g}% CI ({_n(p['ci_low'])} to {_n(p['ci_high'])})"
    std = f"the standard random-effects interval ({_n(w['ci_low'])} to {_n(w['ci_high'])})"
    ratio = width_ratio(r)
    if r["ci_method"] == "z":
        return f"{ci} is the standard random-effects interval itself, which ignores the uncertainty in tau^2"
    if ratio < 1e-6:
        return f"{ci} has zero width, an artefact of the method and not certainty; {std} is the least to assume"
    if ratio < 0.995:
        return (
            f"{ci} is narrower than {std}, {ratio:.2f} times its width: it reflects how closely these clinics "
            "happen to agree, not certainty"
        )
    if ratio < 1.005:
        return f"{ci} is as wide as {std}"
    size = "very wide, " if ratio >= 4 else "wide, " if ratio >= 2 else ""
    return f"{ci} is {size}{ratio:.1f} times as wide as {std}"


def caveats(
    y: Sequence[float],
    r: dict[str, Any],
    *,
    ids: Sequence[str] | None = None,
    df: Sequence[float | None] | None = None,
) -> list[str]:
    """The cautions that apply to one pooled fit, in reading order.

    Parameters
    ----------
    y : the clinics' estimates, in the order given to :func:`analysis.pool.meta.rma`.
    r : :func:`analysis.pool.meta.rma`'s result for them.
    ids : the clinics' ids (for naming a clinic); ``None`` numbers them.
    df : each clinic's own small-sample df (``None`` = normal); ``None`` skips that check.

    Returns
    -------
    list of str : one sentence each, empty when nothing calls for caution.
    """
    k = int(r["k"])
    ids = list(ids) if ids is not None else [f"clinic {i + 1}" for i in range(k)]
    out: list[str] = []
    method = r["ci_method"]
    crit = float(stats.t(k - 1).ppf(1 - r["alpha"] / 2)) if method != "z" else None
    if k < FEW_CLINICS:
        basis = f"the interval uses t with {k - 1} df (critical value {crit:.2f}), and " if crit is not None else ""
        out.append(
            f"only {k} clinics: the between-clinic variance is "
            + ("barely estimable" if k == 2 else "poorly estimated")
            + f" and any random-effects interval is unreliable with fewer than {FEW_CLINICS} studies; "
            + f"{basis}{interval_words(r)}; read the pooled estimate with caution"
        )
    elif width_ratio(r) < 0.995:
        out.append(f"{interval_words(r)}; the default modified Knapp-Hartung interval does not shrink below it")
    if float(np.ptp(np.asarray(y, dtype=float))) == 0.0:
        tail = (
            "the plain Knapp-Hartung interval would have zero width, so the interval shown is the standard "
            "random-effects interval with t(k - 1)"
            if method == "knha_modified"
            else "the plain Knapp-Hartung interval has zero width"
            if method == "knha"
            else "the interval shown is the standard random-effects (Wald) interval"
        )
        out.append(
            f"the {k} clinics' estimates are identical ({_n(float(y[0]))}): exactly equal estimates are rare "
            f"by chance, so check that no two bundles are copies of one analysis. {tail[0].upper()}{tail[1:]}"
        )
    if r["tau2"] == 0.0:
        q = r["q"]
        # a Q-profile bound of 0 only means Q fell below the chi^2 quantile: the clinics differ less than
        # their SEs predict (Q < k - 1), which is itself chance, not a measured absence of differences
        bound = (
            f"Q = {q['statistic']:.2f} on {q['df']} df, below the {q['df']} expected from the standard errors alone"
            if r["tau2_ci"][1] == 0.0
            else f"95% CI {_n(r['tau2_ci'][0])} to {_n(r['tau2_ci'][1])}"
        )
        out.append(
            f"the between-clinic variance (tau^2) is estimated as 0 ({bound}): this does not show that the clinics "
            f"agree, only that {k} clinics with these standard errors cannot tell how much they differ; the "
            "prediction interval then equals the CI and understates how far a new clinic could be from the pooled "
            "estimate"
        )
    for cid, d in zip(ids, df if df is not None else [None] * k, strict=True):
        if d is not None and np.isfinite(d) and d > 0:
            t = float(stats.t(d).ppf(1 - r["alpha"] / 2))
            z = float(stats.norm.ppf(1 - r["alpha"] / 2))
            if t / z > T_OVER_Z:
                out.append(
                    f"{cid}'s own estimate rests on {d:.0f} df (its CI uses t = {t:.2f}, not z = {z:.2f}); the "
                    "pooled analysis treats its standard error as known, as metafor does, so its weight is "
                    "slightly too certain"
                )
    return out
