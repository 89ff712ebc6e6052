"""Random-effects meta-analysis of clinic estimates: pure numpy/scipy functions, as metafor's ``rma()``.

Why not a library: statsmodels offers DerSimonian-Laird and Paule-Mandel only, with no prediction
interval and no Knapp-Hartung option; PyMARE lacks Paule-Mandel and prediction intervals and calls
itself alpha. The estimators are short, so they are written here and tested against metafor 3.8
(``tests/reference/make_reference_metafor.R``, ``tests/test_pool_meta.py``).

Model: ``y_i ~ N(mu, v_i + tau^2)``, ``i = 1..k`` (one estimate and its squared SE per clinic).

- **tau^2**: REML (default; the highest maximum of the restricted likelihood, solved to machine precision),
  Paule-Mandel (generalised Q = k - 1) or DerSimonian-Laird; truncated at 0. If the chosen estimator fails,
  the chain REML -> PM -> DL is followed and the fallback recorded. No root search is capped in outcome
  units (a cap made pooling fail when clinics disagreed strongly).
- **Pooled estimate**: ``mu = sum w y / sum w`` with ``w = 1 / (v + tau^2)``.
- **CI**: modified Knapp-Hartung (default; metafor ``test="adhoc"``, Röver, Knapp & Friede 2015, BMC Med
  Res Methodol 15:99): ``se = sqrt(max(1, q)) se_z`` with the Knapp-Hartung scale factor
  ``q = sum w (y - mu)^2 / (k - 1)`` and t(k - 1), so the interval is never narrower than the standard
  random-effects (Wald) interval. The plain Knapp-Hartung / HKSJ interval (``test="knha"``,
  ``se^2 = q se_z^2``) shrinks with q: when clinics agree more closely than their SEs imply (q << 1) it
  becomes far narrower than even the fixed-effect interval, and zero-width when the estimates are
  identical; with few studies that is the HKSJ failure Röver et al. and Jackson et al. (2017, Stat Med
  36:3923) describe. Both remain selectable, as does Wald-z, ``se_z^2 = 1 / sum w`` (``test="z"``),
  which is always shown alongside.
- **Clinics' own df**: each clinic's SE comes from its own mixed model with small-sample
  (Satterthwaite / Kenward-Roger) df, but the pooled analysis treats ``v_i = SE_i^2`` as known, as
  metafor's ``rma`` and the standard inverse-variance model do. The published corrections for estimated
  within-study variances work from per-arm means, SDs and sizes of unadjusted comparisons, which an
  adjusted mixed-model difference does not rest on, so none is applied and no ad hoc one is invented.
  The t(k - 1) reference of the (modified) Knapp-Hartung interval is the published allowance for
  uncertain weights (Hartung & Knapp 2001; Sidik & Jonkman 2002). The clinics' own CIs (forest plot,
  table) keep their own df, and a clinic whose df are few is named in a warning
  (:func:`analysis.pool.caveats.caveats`).
- **Prediction interval**: ``mu +/- crit sqrt(se^2 + tau^2)`` with the CI's distribution (metafor ``predict``).
- **Heterogeneity**: Cochran's Q with fixed-effect weights and its chi^2(k - 1) p; I^2 and H^2 from tau^2
  and the typical within-clinic variance ``s^2 = (k - 1) sum w0 / ((sum w0)^2 - sum w0^2)``, ``w0 = 1/v``
  (metafor's definitions, so they agree with tau^2); Q-profile CIs for tau^2, I^2 and H^2 (metafor
  ``confint``): the tau^2 at which the generalised Q equals the chi^2(k - 1) quantiles.
- **Diagnostics**: leave-one-out refits (metafor ``leave1out``) and influence (metafor ``influence``:
  externally standardised residuals, Cook's distance, hat values, weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

TAU2_METHODS = ("REML", "PM", "DL")
CI_METHODS = ("knha_modified", "knha", "z")
CI_METHOD_DEFAULT = "knha_modified"
CI_REASONS = {
    "knha_modified": (
        "The pooled CI is the modified Knapp-Hartung interval (t with k - 1 df, scale factor max(1, q); Röver, "
        'Knapp & Friede 2015; metafor test="adhoc") because the plain Knapp-Hartung interval can be narrower '
        "than the standard random-effects interval, even zero-width, when a few clinics happen to agree."
    ),
    "knha": (
        'The pooled CI is the Knapp-Hartung (HKSJ) interval (t with k - 1 df; metafor test="knha"), chosen '
        "instead of the default modified one; it can be narrower than the standard random-effects interval when "
        "a few clinics happen to agree."
    ),
    "z": (
        'The pooled CI is the Wald (z) random-effects interval (metafor test="z"), chosen instead of the default '
        "modified Knapp-Hartung one; it ignores the uncertainty in tau^2 and is too narrow with few clinics."
    ),
}


class MetaError(ValueError):
    """The data cannot be meta-analysed (e.g. fewer than 2 estimates, a non-positive variance)."""


def _check(y: npt.ArrayLike, v: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
    if y.shape != v.shape or y.ndim != 1:
        raise MetaError("estimates and variances must be two vectors of the same length")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        raise MetaError("estimates and variances must be finite numbers")
    if np.any(v <= 0):
        raise MetaError("every sampling variance must be positive")
    return y, v


def _mu(y: np.ndarray, v: np.ndarray, tau2: float) -> tuple[float, np.ndarray]:
    w = 1.0 / (v + tau2)
    return float(np.sum(w * y) / np.sum(w)), w


def q_gen(y: np.ndarray, v: np.ndarray, tau2: float) -> float:
    """Generalised Q: ``sum (y - mu(tau2))^2 / (v + tau2)``; decreasing in tau2."""
    mu, w = _mu(y, v, tau2)
    return float(np.sum(w * (y - mu) ** 2))


def tau2_dl(y: npt.ArrayLike, v: npt.ArrayLike) -> float:
    """DerSimonian-Laird moment estimator, truncated at 0."""
    y, v = _check(y, v)
    k = len(y)
    w = 1.0 / v
    q = q_gen(y, v, 0.0)
    c = np.sum(w) - np.sum(w**2) / np.sum(w)
    return float(max(0.0, (q - (k - 1)) / c))


def _root_q(y: np.ndarray, v: np.ndarray, target: float) -> float:
    """The tau2 >= 0 at which the generalised Q equals ``target`` (> 0); 0 if Q(0) <= target.

    The bracket needs no cap in outcome units: mu(tau2) minimises the weighted sum of squares, so
    ``Q(tau2) <= SS / (min v + tau2)`` with ``SS = sum (y - mean y)^2``, and ``Q(SS / target) < target``.
    (A fixed cap of 1e4 made pooling fail for two clinics whose estimates differ by 6 SEs.)
    """

    def f(t: float) -> float:
        return q_gen(y, v, t) - target

    if f(0.0) <= 0:
        return 0.0
    hi = float(np.sum((y - np.mean(y)) ** 2)) / target
    while f(hi) > 0:  # only rounding can leave Q(hi) above the target
        hi *= 2.0
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-14, rtol=1e-14, maxiter=500))


def tau2_pm(y: npt.ArrayLike, v: npt.ArrayLike) -> float:
    """Paule-Mandel: the tau2 at which the generalised Q equals k - 1 (0 if Q(0) <= k - 1)."""
    y, v = _check(y, v)
    return _root_q(y, v, len(y) - 1.0)


def reml_score(y: np.ndarray, v: np.ndarray, tau2: float) -> float:
    """Derivative of the restricted log-likelihood with respect to tau2."""
    mu, w = _mu(y, v, tau2)
    return float(-0.5 * np.sum(w) + 0.5 * np.sum(w**2 * (y - mu) ** 2) + 0.5 * np.sum(w**2) / np.sum(w))


def reml_loglik(y: np.ndarray, v: np.ndarray, tau2: float) -> float:
    """The restricted log-likelihood (without its constant) at tau2."""
    mu, w = _mu(y, v, tau2)
    return float(-0.5 * (np.sum(np.log(v + tau2)) + np.log(np.sum(w)) + np.sum(w * (y - mu) ** 2)))


def _reml_scores(y: np.ndarray, v: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """:func:`reml_score` at every tau2 of ``grid`` at once."""
    w = 1.0 / (v[None, :] + grid[:, None])
    sw = w.sum(axis=1)
    mu = (w * y[None, :]).sum(axis=1) / sw
    scores: np.ndarray = 0.5 * (-sw + (w**2 * (y[None, :] - mu[:, None]) ** 2).sum(axis=1) + (w**2).sum(axis=1) / sw)
    return scores


def tau2_reml(y: npt.ArrayLike, v: npt.ArrayLike) -> float:
    """REML: the tau2 >= 0 that maximises the restricted likelihood over all its local maxima.

    The restricted likelihood can have two maxima when the SEs are very unequal (e.g. one at 0 and one
    inside): stopping at 0 because the score there is negative misses an interior maximum that is higher.
    So the score is scanned on a log grid up to where it stays negative, every sign change from + to -
    is solved to machine precision, and the candidate (with 0 when the score there is <= 0) of highest
    restricted likelihood is returned.
    """
    y, v = _check(y, v)
    if len(y) < 2:
        raise MetaError("REML needs at least 2 estimates")
    spread = float(np.ptp(y)) ** 2
    if spread == 0.0:
        return 0.0
    # beyond ~ k (range y)^2 + max v the score is negative; extend until it is, to be sure
    hi = 10.0 * (len(y) * spread + float(np.max(v)))
    while reml_score(y, v, hi) > 0:
        hi *= 10.0
        if not np.isfinite(hi):
            raise MetaError("the REML score does not change sign: no finite maximum")
    grid = np.concatenate([[0.0], np.geomspace(1e-10 * min(float(np.min(v)), hi), hi, 2000)])
    scores = _reml_scores(y, v, grid)
    if not np.all(np.isfinite(scores)):
        raise MetaError("the REML score is not finite on the search grid")
    candidates = [0.0] if scores[0] <= 0 else []
    for i in np.flatnonzero((scores[:-1] > 0) & (scores[1:] <= 0)):
        candidates.append(
            float(
                optimize.brentq(
                    lambda t: reml_score(y, v, t), grid[i], grid[i + 1], xtol=1e-15, rtol=1e-14, maxiter=500
                )
            )
        )
    return max(candidates, key=lambda t: reml_loglik(y, v, t))


_TAU2 = {"REML": tau2_reml, "PM": tau2_pm, "DL": tau2_dl}


def estimate_tau2(y: npt.ArrayLike, v: npt.ArrayLike, method: str = "REML") -> tuple[float, str, list[str]]:
    """tau2 by ``method``, falling back along REML -> PM -> DL; returns (tau2, method used, fallbacks)."""
    if method not in TAU2_METHODS:
        raise ValueError(f"tau2 method must be one of {TAU2_METHODS}, not {method!r}")
    chain = list(TAU2_METHODS[TAU2_METHODS.index(method) :])
    notes: list[str] = []
    for m in chain:
        try:
            return _TAU2[m](y, v), m, notes
        except (MetaError, RuntimeError, ValueError, FloatingPointError) as exc:
            notes.append(f"{m} failed ({exc}); fell back to the next estimator")
    raise MetaError("every tau^2 estimator failed: " + "; ".join(notes))


def typical_variance(v: np.ndarray) -> float:
    """metafor's typical within-study variance ``(k - 1) sum w / ((sum w)^2 - sum w^2)``."""
    w = 1.0 / v
    return float((len(v) - 1) * np.sum(w) / (np.sum(w) ** 2 - np.sum(w**2)))


def i2_h2(tau2: float, s2: float) -> tuple[float, float]:
    """I^2 (percent) and H^2 from tau^2 and the typical within-study variance."""
    return float(100.0 * tau2 / (tau2 + s2)), float((tau2 + s2) / s2)


@dataclass(frozen=True)
class Interval:
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float | None  # None = normal

    def as_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "se": self.se,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "df": self.df,
        }


def _interval(mu: float, se: float, df: float | None, alpha: float) -> Interval:
    dist = stats.norm if df is None else stats.t(df)
    crit = float(dist.ppf(1 - alpha / 2))
    # a zero SE (plain Knapp-Hartung, identical estimates) gives p = 0 as in metafor, or NaN when mu is 0 too
    p = float(2 * dist.sf(abs(mu / se))) if se > 0 else (0.0 if mu != 0 else float("nan"))
    return Interval(mu, se, mu - crit * se, mu + crit * se, p, df)


def q_profile(y: npt.ArrayLike, v: npt.ArrayLike, alpha: float = 0.05) -> tuple[float, float]:
    """Q-profile CI for tau2 (metafor ``confint``): generalised Q at the chi^2(k - 1) quantiles, bounded at 0."""
    y, v = _check(y, v)
    k = len(y)
    if k < 2:
        return float("nan"), float("nan")
    lo_target = float(stats.chi2.ppf(1 - alpha / 2, k - 1))
    hi_target = float(stats.chi2.ppf(alpha / 2, k - 1))
    return _root_q(y, v, lo_target), _root_q(y, v, hi_target)


def rma(
    y: npt.ArrayLike,
    v: npt.ArrayLike,
    *,
    tau2_method: str = "REML",
    ci_method: str = CI_METHOD_DEFAULT,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Random-effects meta-analysis, metafor's ``rma(yi, vi, method=..., test=...)`` plus predict and confint.

    Parameters
    ----------
    y, v : estimates and their sampling variances (SE^2), one per clinic.
    tau2_method : ``'REML'`` (default), ``'PM'`` or ``'DL'``.
    ci_method : ``'knha_modified'`` (default; Knapp-Hartung with scale factor max(1, q), t(k - 1): never
        narrower than the Wald random-effects interval), ``'knha'`` (Hartung-Knapp-Sidik-Jonkman, t(k - 1))
        or ``'z'`` (Wald).

    Returns
    -------
    dict with ``k``, ``tau2_method`` (requested), ``tau2_method_used``, ``tau2_fallbacks``, ``ci_method``,
    ``pooled`` {estimate, se, ci_low, ci_high, p_value, df} (by ``ci_method``), ``wald`` (the same with z),
    ``prediction`` {pi_low, pi_high, df}, ``tau2``, ``tau``, ``tau2_ci``, ``i2``, ``i2_ci``, ``h2``,
    ``h2_ci``, ``q`` {statistic, df, p_value}, ``weights`` (percent, in input order).

    Raises
    ------
    MetaError : fewer than 2 estimates, or unusable numbers.
    """
    if ci_method not in CI_METHODS:
        raise ValueError(f"ci method must be one of {CI_METHODS}, not {ci_method!r}")
    y, v = _check(y, v)
    k = len(y)
    if k < 2:
        raise MetaError("pooling needs at least 2 clinics")
    tau2, used, notes = estimate_tau2(y, v, tau2_method)
    mu, w = _mu(y, v, tau2)
    se_z = float(np.sqrt(1.0 / np.sum(w)))
    wald = _interval(mu, se_z, None, alpha)
    se_kh = float(np.sqrt(np.sum(w * (y - mu) ** 2) / ((k - 1) * np.sum(w))))
    if ci_method == "z":
        pooled = wald
    elif ci_method == "knha":
        pooled = _interval(mu, se_kh, float(k - 1), alpha)
    else:
        pooled = _interval(mu, max(se_kh, se_z), float(k - 1), alpha)
    s2w = (pooled.se / se_z) ** 2  # the Knapp-Hartung scale factor (1 for Wald)
    crit = float((stats.norm if pooled.df is None else stats.t(pooled.df)).ppf(1 - alpha / 2))
    half = crit * float(np.sqrt(pooled.se**2 + tau2))
    s2 = typical_variance(v)
    i2, h2 = i2_h2(tau2, s2)
    t_lo, t_hi = q_profile(y, v, alpha)
    q = q_gen(y, v, 0.0)
    return {
        "k": k,
        "tau2_method": tau2_method,
        "tau2_method_used": used,
        "tau2_fallbacks": notes,
        "ci_method": ci_method,
        "ci_method_reason": CI_REASONS[ci_method],
        "alpha": alpha,
        "pooled": pooled.as_dict(),
        "wald": wald.as_dict(),
        "prediction": {"pi_low": mu - half, "pi_high": mu + half, "df": pooled.df},
        "tau2": tau2,
        "tau": float(np.sqrt(tau2)),
        "tau2_ci": [t_lo, t_hi],
        "i2": i2,
        "i2_ci": [i2_h2(t_lo, s2)[0], i2_h2(t_hi, s2)[0]],
        "h2": h2,
        "h2_ci": [i2_h2(t_lo, s2)[1], i2_h2(t_hi, s2)[1]],
        "q": {"statistic": q, "df": k - 1, "p_value": float(stats.chi2.sf(q, k - 1))},
        "weights": [float(x) for x in 100.0 * w / np.sum(w)],
        "scale_factor": float(s2w),
    }


def leave_one_out(
    y: npt.ArrayLike,
    v: npt.ArrayLike,
    *,
    tau2_method: str = "REML",
    ci_method: str = CI_METHOD_DEFAULT,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """metafor ``leave1out``: the meta-analysis without each clinic in turn (k >= 3).

    Returns
    -------
    list (input order) of {estimate, se, ci_low, ci_high, p_value, tau2, i2, q}.
    """
    y, v = _check(y, v)
    out = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        r = rma(y[keep], v[keep], tau2_method=tau2_method, ci_method=ci_method, alpha=alpha)
        out.append(
            {
                **{k: r["pooled"][k] for k in ("estimate", "se", "ci_low", "ci_high", "p_value")},
                "tau2": r["tau2"],
                "i2": r["i2"],
                "q": r["q"]["statistic"],
                "scale_factor": r["scale_factor"],
            }
        )
    return out


def influence(
    y: npt.ArrayLike,
    v: npt.ArrayLike,
    *,
    tau2_method: str = "REML",
    ci_method: str = CI_METHOD_DEFAULT,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """metafor ``influence``: externally standardised residual, Cook's distance, hat value and weight per clinic.

    ``rstudent_i = (y_i - mu_(-i)) / sqrt(s2_(-i) (v_i + tau2_(-i)) + se_(-i)^2)`` with the deleted fit's
    SE and Knapp-Hartung scale factor ``s2_(-i)`` (1 for Wald), as metafor scales it;
    ``cook_i = (mu - mu_(-i))^2 / se^2`` with the full fit's SE; ``hat_i = w_i / sum w``.
    """
    y, v = _check(y, v)
    full = rma(y, v, tau2_method=tau2_method, ci_method=ci_method, alpha=alpha)
    mu, se = full["pooled"]["estimate"], full["pooled"]["se"]
    w = 1.0 / (v + full["tau2"])
    out = []
    for i, loo in enumerate(leave_one_out(y, v, tau2_method=tau2_method, ci_method=ci_method, alpha=alpha)):
        denom = float(np.sqrt(loo["scale_factor"] * (v[i] + loo["tau2"]) + loo["se"] ** 2))
        # identical estimates leave no residual spread (Knapp-Hartung SE 0): no standardised residual then
        out.append(
            {
                "rstudent": float((y[i] - loo["estimate"]) / denom) if denom > 0 else float("nan"),
                "cook_d": float((mu - loo["estimate"]) ** 2 / se**2) if se > 0 else float("nan"),
                "hat": float(w[i] / np.sum(w)),
                "weight": float(100.0 * w[i] / np.sum(w)),
                "tau2_deleted": loo["tau2"],
                "q_deleted": loo["q"],
            }
        )
    return out
