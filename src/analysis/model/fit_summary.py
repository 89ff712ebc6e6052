"""Summaries of a mixed-model verdict: fixed and random effects as plain dicts, contrasts, Wald intervals.

Split from :mod:`analysis.model.fit` (which re-exports :func:`mixed_summary`, :func:`linear_contrast` and
:func:`wald`, the names callers use): that module fits and judges, this one reads an accepted fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.errors import ModelError
from analysis.model import lmm

if TYPE_CHECKING:
    from analysis.model.fit import MixedFit


def _re_names(f: lmm.LmmFit) -> list[str]:
    return list(f.design.re_names)


def wald(estimate: float, se: float, alpha: float) -> dict[str, Any]:
    """Normal-approximation estimate, se, CI and two-sided p as floats (NaN when se is unusable).

    :func:`analysis.model.lmm.t_interval` with infinite df, without its ``df`` key (these entries are
    z-based by construction: GEE, IPTW, logistic and OLS estimates of the secondary analyses).
    """
    out = lmm.t_interval(estimate, se, float("inf"), alpha)
    del out["df"]
    if not (np.isfinite(se) and se > 0):
        out["se"] = float("nan")
    return out


def mixed_summary(fit: MixedFit, alpha: float = 0.05) -> dict[str, Any]:
    """Fixed effects, random effects and fit evidence as plain dicts (JSON-ready).

    Returns
    -------
    dict
        ``fixed_effects`` {name: {estimate, se, df, ci_low, ci_high, p_value, df_method}},
        ``random_effects`` {``variances`` {name: v}, ``covariance`` {"cov(a, b)": c},
        ``correlation`` {"corr(a, b)": r}, ``residual_variance``},
        ``converged``, ``optimizer``, ``status``, ``reason``, ``checks``, ``df_method``,
        ``n_groups``, ``n_obs``. For a failed fit the effects are empty.
    """
    out: dict[str, Any] = dict(
        converged=fit.converged,
        optimizer=fit.optimizer,
        status=fit.status,
        reason=fit.reason,
        checks=fit.checks,
        n_groups=fit.n_groups,
        n_obs=fit.n_obs,
        df_method=fit.df_method,
        fixed_effects={},
        random_effects={"variances": {}, "covariance": {}, "correlation": {}, "residual_variance": None},
    )
    res = fit.result
    if not fit.ok or res is None:
        return out
    names = res.design.fixed_names
    out["fixed_effects"] = {
        n: _finite_df(res.contrast(np.eye(len(names))[i], fit.df_method, alpha)) for i, n in enumerate(names)
    }
    cov_re = res.cov_re
    re_names = _re_names(res)
    re = out["random_effects"]
    re["variances"] = {n: float(cov_re[i, i]) for i, n in enumerate(re_names)}
    for i in range(len(re_names)):
        for j in range(i + 1, len(re_names)):
            re["covariance"][f"cov({re_names[i]}, {re_names[j]})"] = float(cov_re[i, j])
            re["correlation"][f"corr({re_names[i]}, {re_names[j]})"] = float(
                cov_re[i, j] / np.sqrt(cov_re[i, i] * cov_re[j, j])
            )
    re["residual_variance"] = float(res.sigma2)
    return out


def linear_contrast(
    fit: MixedFit, weights: dict[str, float], alpha: float = 0.05, df_method: str | None = None
) -> dict[str, Any]:
    """Estimate of a linear combination of fixed effects, ``sum(w * beta)``, with the fit's df method
    (or ``df_method``, for one contrast under another inference without touching the fit).

    Parameters
    ----------
    fit : an accepted :class:`MixedFit`.
    weights : fixed-effect name -> weight, e.g. ``{'week:hip': 6.0}`` for the
        difference in change at week 6.
    alpha : 1 - confidence level.
    df_method : ``'satterthwaite'``, ``'kenward_roger'`` or ``'z'``; default the fit's own.

    Returns
    -------
    dict with ``estimate``, ``se``, ``df``, ``ci_low``, ``ci_high``, ``p_value``, ``df_method``
    (``df`` is inf for ``'z'``; CIs use t(df)).
    """
    res = _require(fit)
    names = res.design.fixed_names
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ModelError(f"contrast names {unknown} are not fixed effects of {fit.formula!r}; known: {names}")
    return _finite_df(res.contrast({k: float(v) for k, v in weights.items()}, df_method or fit.df_method, alpha))


def _finite_df(out: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: df null means the normal approximation (df_method 'z')."""
    if out["df"] is not None and not np.isfinite(out["df"]):
        out["df"] = None
    return out


def _require(fit: MixedFit) -> lmm.LmmFit:
    """The engine's fit behind an accepted :class:`MixedFit`; an error naming the reason otherwise."""
    if not fit.ok or fit.result is None:
        raise ModelError(f"the model {fit.formula!r} did not give a trustworthy fit: {fit.reason}")
    return fit.result
