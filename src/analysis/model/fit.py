"""Fit: linear mixed models that are either trustworthy or reported as failed.

Every mixed model of the project is fitted by the project's engine
(:mod:`analysis.model.lmm`, lme4's formulation, checked against lme4,
lmerTest and pbkrtest). This module turns an engine fit into the project's
verdict, :class:`MixedFit`:

- ``status='ok'`` only when convergence is *proven* (projected gradient below
  tolerance, Newton decrement tiny, Hessian positive definite on the free
  parameters, no descent into the interior from a bound; see
  :mod:`analysis.model.lmm.optimize`) **and** the fit is not singular;
- a **singular** fit (lme4's ``isSingular``: a diagonal element of the
  relative covariance factor below ``singular_tol`` = 1e-4, e.g. a random-slope
  variance of 0 or a correlation of -1) is ``status='failed'`` with that reason;
  :func:`fit_mixed_with_fallback` then applies the pre-specified fallback, a
  random intercept only (``status='fallback'``), and says why;
- a fit that does not converge is ``status='failed'`` with the reason and no
  result; it never falls back (a simpler model does not cure a numerical failure);
- fixed-effect columns that are combinations of earlier ones in these data
  (e.g. a covariate level present in one group only) are dropped before the
  fit, as lme4 does, and listed in ``MixedFit.dropped``; a contrast that needs
  a dropped term is an error, never a silent zero.

Inference: fixed-effects covariance ``sigma^2 (X'V^-1 X)^-1``; CIs and p-values
from the t distribution with Satterthwaite (lmerTest) or Kenward-Roger
(pbkrtest) df, or Wald-z, chosen by params ``model.df_method``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import ModelError
from analysis.model import lmm
from analysis.model.fit_summary import _re_names, _require
from analysis.model.fit_summary import linear_contrast as linear_contrast
from analysis.model.fit_summary import mixed_summary as mixed_summary
from analysis.model.fit_summary import wald as wald
from analysis.params_schema import ModelParams

DF_METHOD_DEFAULT = "satterthwaite"
DF_METHOD_LABELS = {
    "satterthwaite": "Satterthwaite df (as lmerTest)",
    "kenward_roger": "Kenward-Roger adjusted SE and df (as pbkrtest)",
    "z": "Wald normal approximation (no small-sample correction)",
}
ENGINE = "lme4-formulation engine (profiled REML/ML deviance, exact gradient, L-BFGS-B + projected Newton)"


@dataclass
class MixedFit:
    """A mixed-model fit and the evidence that it can be trusted.

    Attributes
    ----------
    result : the engine's :class:`analysis.model.lmm.LmmFit`, or None when the fit failed.
    converged : convergence proven (see the module docstring).
    optimizer : the engine's optimiser ('' when no fit was attempted).
    status : ``'ok'``, ``'fallback'`` (random intercept after a singular planned fit) or ``'failed'``.
    reason : why the fit failed or fell back ('' when ok).
    checks : evidence: ``converged``, ``singular``, ``gradient_max``, ``newton_decrement``,
        ``hessian_min_eig``, ``boundary_ok``, ``theta``, ``deviance``, ``criterion`` (the optimiser's
        ``iterations`` and ``evaluations``, which depend on the CPU, are in ``result.optimum.checks``).
    formula, re_formula : the fixed-effects formula and random-effects formula (None = intercept only).
    n_groups, n_obs : clients and observations.
    df_method : ``'satterthwaite'``, ``'kenward_roger'`` or ``'z'``.
    attempts : one dict per model tried: ``model``, ``ok``, ``reason``.
    dropped : fixed-effect terms left out because they are combinations of earlier ones in these data
        (lme4 drops them the same way); their coefficients are not estimable.
    """

    result: lmm.LmmFit | None
    converged: bool
    optimizer: str
    status: str
    reason: str
    checks: dict[str, Any]
    formula: str
    re_formula: str | None
    n_groups: int
    n_obs: int
    df_method: str = DF_METHOD_DEFAULT
    attempts: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @classmethod
    def failed(
        cls,
        reason: str,
        *,
        formula: str,
        re_formula: str | None,
        n_groups: int,
        n_obs: int,
        df_method: str = DF_METHOD_DEFAULT,
        converged: bool = False,
        optimizer: str = "",
        checks: dict[str, Any] | None = None,
        attempts: list[dict[str, Any]] | None = None,
    ) -> MixedFit:
        """A fit that was not accepted, with the ``reason`` and whatever evidence there is."""
        return cls(
            result=None,
            converged=converged,
            optimizer=optimizer,
            status="failed",
            reason=reason,
            checks=checks or {},
            formula=formula,
            re_formula=re_formula,
            n_groups=n_groups,
            n_obs=n_obs,
            df_method=df_method,
            attempts=attempts or [],
        )

    @property
    def ok(self) -> bool:
        return self.result is not None and self.status in ("ok", "fallback")

    @property
    def accepted(self) -> lmm.LmmFit:
        """The engine's fit behind an accepted verdict; :class:`ModelError` naming the reason otherwise."""
        return _require(self)


def _checks(f: lmm.LmmFit) -> dict[str, Any]:
    c = f.optimum.checks
    return {
        "converged": bool(f.converged),
        "singular": bool(f.singular),
        # at a polished optimum these are float noise (1e-11, 1e-25): published on a fixed absolute grid far
        # below their tolerances, and the finite-difference Hessian's eigenvalue to 4 digits, so they read 0
        # (resp. the same number) on every machine (lmm.optimize.PUBLISHED_RESOLUTION)
        "gradient_max": _grid(c.get("gradient_max"), lmm.optimize.PUBLISHED_RESOLUTION["gradient_max"]),
        "scaled_gradient_max": _grid(
            c.get("scaled_gradient_max"), lmm.optimize.PUBLISHED_RESOLUTION["scaled_gradient_max"]
        ),
        "newton_decrement": _grid(c.get("newton_decrement"), lmm.optimize.PUBLISHED_RESOLUTION["newton_decrement"]),
        "hessian_min_eig": _sig(c.get("hessian_min_eig"), lmm.optimize.PUBLISHED_HESSIAN_DIGITS),
        "boundary_ok": bool(c.get("boundary_ok", False)),
        "theta": [float(t) for t in f.theta],
        "deviance": _num(f.deviance),
        "criterion": "REML" if f.reml else "ML",
        # not published: iterations and evaluations describe the optimiser's path, which differs between
        # CPUs (35 vs 29 evaluations with OPENBLAS_CORETYPE=Prescott) although the optimum does not;
        # they stay in f.optimum.checks
    }


def _num(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _grid(v: float | None, step: float) -> float | None:
    """``v`` rounded to a multiple of ``step`` (None stays None)."""
    x = _num(v)
    return None if x is None else float(round(x / step) * step) + 0.0


def _sig(v: float | None, digits: int) -> float | None:
    """``v`` rounded to ``digits`` significant digits (None stays None)."""
    x = _num(v)
    return None if x is None else float(f"{x:.{digits}g}")


def fit_mixed(
    data: pd.DataFrame,
    formula: str,
    groups: str,
    re_formula: str | None,
    *,
    reml: bool = True,
    singular_tol: float = 1e-4,
    df_method: str = DF_METHOD_DEFAULT,
) -> MixedFit:
    """Fit a linear mixed model with the engine and judge it.

    Parameters
    ----------
    data : long DataFrame, one row per observation; no missing values in the
        columns the formulas use (rows with gaps are an error, never dropped).
    formula : fixed-effects formula, e.g. ``'y ~ week * hip + C(sex)'``.
    groups : column identifying the clusters (clients).
    re_formula : random-effects formula, e.g. ``'~week'``; None = random intercept.
    reml : REML (default) or ML.
    singular_tol : lme4's ``isSingular`` tolerance on the relative covariance factor's diagonal.
    df_method : ``'satterthwaite'`` (default), ``'kenward_roger'`` or ``'z'``.

    Returns
    -------
    MixedFit
        ``status='ok'`` with the result, or ``status='failed'`` with ``result=None`` and the reason.

    Examples
    --------
    Thirty clients seen five times, each with their own start and weekly slope (mean -0.3):

    >>> rng = np.random.default_rng(1)
    >>> data = pd.DataFrame({"client": np.repeat(np.arange(30), 5), "week": np.tile(np.arange(5.0), 30)})
    >>> slope = -0.3 + rng.normal(0, 0.2, 30)
    >>> data["y"] = 5 + rng.normal(0, 1, 30).repeat(5) + slope.repeat(5) * data["week"] + rng.normal(0, 0.5, 150)
    >>> fit = fit_mixed(data, "y ~ week", "client", "~week")
    >>> fit.status, round(float(fit.result.fe_params["week"]), 2)
    ('ok', -0.32)
    """
    if df_method not in lmm.DF_METHODS:
        raise ModelError(f"params model.df_method must be one of {', '.join(lmm.DF_METHODS)}, not {df_method!r}")
    design = lmm.from_formula(data, formula, groups, re_formula)
    return fit_design(design, formula, re_formula, reml=reml, singular_tol=singular_tol, df_method=df_method)


def fit_design(
    design: lmm.Design,
    formula: str,
    re_formula: str | None,
    *,
    reml: bool = True,
    singular_tol: float = 1e-4,
    df_method: str = DF_METHOD_DEFAULT,
) -> MixedFit:
    """:func:`fit_mixed` on a design already built from ``formula`` and ``re_formula`` (for callers that
    build many designs without patsy, such as the self-check; ``formula`` and ``re_formula`` only label
    the result)."""
    if df_method not in lmm.DF_METHODS:
        raise ModelError(f"params model.df_method must be one of {', '.join(lmm.DF_METHODS)}, not {df_method!r}")
    base: dict[str, Any] = {
        "formula": formula,
        "re_formula": re_formula,
        "n_groups": design.n_groups,
        "n_obs": design.n_obs,
        "df_method": df_method,
    }
    label = f"random effects {re_formula or '~1'}"
    dropped: list[str] = []
    keep = lmm.design.independent_columns(design)
    if len(keep) < design.p:
        # As lme4 does: fit without the columns that are combinations of earlier ones, and say so.
        dropped = [n for j, n in enumerate(design.fixed_names) if j not in keep]
        design = lmm.design.select_columns(design, keep)
    if design.n_obs <= design.p:
        reason = f"{design.n_obs} observations for {design.p} fixed effects: no residual degrees of freedom"
        return MixedFit.failed(reason, attempts=[{"model": label, "ok": False, "reason": reason}], **base)
    f = lmm.fit(design, reml=reml)
    checks = _checks(f)
    optimizer = str(f.optimum.checks.get("optimizer", ""))
    singular = lmm.optimize.is_singular(f.theta, design.q, singular_tol)
    checks["singular"] = singular
    checks["dropped_terms"] = dropped
    if not f.converged:
        reason = f"convergence not proven: {f.optimum.reason}"
    elif singular:
        reason = f"singular fit ({_singular_detail(f)})"
    else:
        reason = ""
    attempts = [{"model": label, "ok": reason == "", "reason": reason}]
    if reason:
        return MixedFit.failed(
            reason, converged=f.converged, optimizer=optimizer, checks=checks, attempts=attempts, **base
        )
    return MixedFit(
        result=f,
        converged=True,
        optimizer=optimizer,
        status="ok",
        reason="",
        checks=checks,
        attempts=attempts,
        dropped=dropped,
        **base,
    )


def _singular_detail(f: lmm.LmmFit) -> str:
    """Which variance is at zero, or which correlation at +/-1, in words."""
    names = _re_names(f)
    cov = f.cov_re
    parts = []
    for i, n in enumerate(names):
        if cov[i, i] <= 1e-8 * max(f.sigma2, 1e-300):
            parts.append(f"variance of {n} estimated as 0")
    if not parts and len(names) > 1:
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                r = cov[i, j] / np.sqrt(cov[i, i] * cov[j, j])
                parts.append(f"correlation of {names[i]} and {names[j]} = {r:.3f}")
    return "; ".join(parts) or "a random-effect variance at its bound"


def fit_mixed_with_fallback(
    data: pd.DataFrame,
    formula: str,
    groups: str,
    re_formula: str | None,
    **kwargs: Any,
) -> MixedFit:
    """:func:`fit_mixed`; if the planned random-slope model is *singular*, refit with a random intercept only.

    Returns
    -------
    MixedFit
        The planned fit (``status='ok'``), the intercept-only refit
        (``status='fallback'``, ``reason`` saying why and that the slope
        variance is now assumed zero), or ``status='failed'`` (the planned fit
        did not converge, or the fallback failed too).
    """
    fit = fit_mixed(data, formula, groups, re_formula, **kwargs)
    if not _needs_fallback(fit, re_formula):
        return fit
    return _fallback(fit, fit_mixed(data, formula, groups, None, **kwargs), re_formula)


def fit_design_with_fallback(design: lmm.Design, formula: str, re_formula: str | None, **kwargs: Any) -> MixedFit:
    """:func:`fit_mixed_with_fallback` on a design already built (see :func:`fit_design`); the random-intercept
    refit keeps the design's first random-effects column, which must be the intercept."""
    fit = fit_design(design, formula, re_formula, **kwargs)
    if not _needs_fallback(fit, re_formula):
        return fit
    if design.re_names[0] != "Intercept":
        raise ModelError(f"random effects {design.re_names}: the fallback needs the intercept first")
    d = design
    simple = lmm.from_arrays(d.X, d.Z[:, :1], d.y, d.group_labels[d.group_codes], d.fixed_names, d.re_names[:1])
    return _fallback(fit, fit_design(simple, formula, None, **kwargs), re_formula)


def _needs_fallback(fit: MixedFit, re_formula: str | None) -> bool:
    planned_slope = re_formula is not None and re_formula.strip() not in ("1", "~1")
    return not fit.ok and planned_slope and bool(fit.checks.get("singular"))


def _fallback(fit: MixedFit, simple: MixedFit, re_formula: str | None) -> MixedFit:
    """The verdict after a singular planned fit ``fit`` and its random-intercept refit ``simple``."""
    simple.attempts = fit.attempts + simple.attempts
    if not simple.ok:
        simple.reason = (
            f"planned model (random effects {re_formula}) failed: {fit.reason}; "
            f"random-intercept refit failed too: {simple.reason}"
        )
        simple.re_formula = re_formula
        return simple
    simple.status = "fallback"
    simple.reason = (
        f"planned model with random effects {re_formula} is singular ({fit.reason}); refitted with "
        "a random intercept only (pre-specified fallback), which assumes every client's trajectory has "
        "the same slope apart from the fixed effects -- standard errors of slope contrasts may be too "
        "small"
    )
    return simple


def fit_options(cfg: ModelParams) -> dict[str, Any]:
    """The engine options from the params ``model`` section: ``singular_tol`` and ``df_method``."""
    return {
        "singular_tol": cfg.singular_tol,
        "df_method": cfg.df_method,
    }
