"""Fit: linear mixed models that are either trustworthy or reported as failed.

statsmodels' ``MixedLM`` can return a result after an optimiser has stopped
short, with a singular Hessian or with a variance component stuck at zero;
it says so only through warnings. :func:`fit_mixed` therefore tries the
optimisers in turn (params ``model.optimizers``), records the warnings of
each attempt (caught narrowly, around the fit only) and accepts the first
attempt that passes every check:

- the optimiser converged (``result.converged``) and raised no
  ``ConvergenceWarning`` about it;
- the fixed-effects covariance matrix is finite and positive definite, and so
  is the full parameter covariance (i.e. the Hessian is negative definite);
- no random-effect variance is on the boundary: a variance
  ``<= boundary_tol * residual variance`` or a random-effects correlation with
  ``|r| >= 1 - 1e-3`` fails the attempt.

statsmodels' own boundary warning ("The MLE may be on the boundary") uses an
absolute threshold (variance < 0.01) that depends on the outcome's units -- a
real between-client slope SD of 0.1 NPRS points/week would trip it -- so that
one warning is recorded but judged by the relative rule above instead.

Every attempt starts from a moment estimate of the random-effects covariance
(:func:`moment_start`) rather than statsmodels' identity matrix, which made
L-BFGS stop short on clinic-sized data (random slope variance ~0.1 vs
intercept ~2). A design matrix that is rank-deficient (collinear terms) fails
at once with that reason.

If every attempt fails the fit is ``status='failed'`` and ``result`` is None:
a failed fit is never returned as a result. :func:`fit_mixed_with_fallback`
refits a random-slope model with a random intercept only and marks the fit
``status='fallback'`` with the reason, which the primary result must show.

Inference on fixed effects uses the Wald normal approximation (as statsmodels
does for ``MixedLM``): ``estimate +/- z * se``, two-sided p from the normal.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from patsy import PatsyError
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams, MixedLMResults
from statsmodels.tools.sm_exceptions import ConvergenceWarning, MissingDataError, SingularMatrixWarning

from analysis.errors import ModelError

DEFAULT_OPTIMIZERS = ("lbfgs", "bfgs", "powell", "nm")
CORR_TOL = 1e-3
STATSMODELS_BOUNDARY = "The MLE may be on the boundary"


@dataclass
class MixedFit:
    """A mixed-model fit and the evidence that it can be trusted.

    Attributes
    ----------
    result : the statsmodels ``MixedLMResults``, or None when the fit failed.
    converged : True only for an accepted fit.
    optimizer : the optimiser of the accepted attempt ('' when failed).
    status : ``'ok'``, ``'fallback'`` (simpler random effects than planned) or ``'failed'``.
    reason : why the fit failed or fell back ('' when ok).
    checks : evidence for the accepted (or last) attempt: ``converged``,
        ``boundary`` (bool), ``boundary_component``, ``hessian_pd``,
        ``fe_cov_pd``, ``gradient_norm``, ``warnings`` (messages).
    formula, re_formula : the fixed-effects formula and random-effects formula (None = intercept only).
    n_groups, n_obs : clients and observations.
    attempts : one dict per optimiser tried: ``optimizer``, ``ok``, ``reason``.
    """

    result: MixedLMResults | None
    converged: bool
    optimizer: str
    status: str
    reason: str
    checks: dict
    formula: str
    re_formula: str | None
    n_groups: int
    n_obs: int
    attempts: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result is not None and self.status in ("ok", "fallback")


def fit_mixed(
    data: pd.DataFrame,
    formula: str,
    groups: str,
    re_formula: str | None,
    *,
    optimizers: tuple[str, ...] | list[str] = DEFAULT_OPTIMIZERS,
    reml: bool = True,
    boundary_tol: float = 1e-4,
) -> MixedFit:
    """Fit a linear mixed model, trying each optimiser until one passes every check.

    Parameters
    ----------
    data : long DataFrame, one row per observation; no missing values in the
        columns the formulas use (rows with gaps are an error, never dropped).
    formula : fixed-effects formula, e.g. ``'y ~ week * hip + C(sex)'``.
    groups : column identifying the clusters (clients).
    re_formula : random-effects formula, e.g. ``'~week'``; None = random intercept.
    optimizers : scipy optimisers to try in order.
    reml : REML (default) or ML.
    boundary_tol : a random-effect variance ``<= boundary_tol * residual
        variance`` is on the boundary and fails the attempt.

    Returns
    -------
    MixedFit
        ``status='ok'`` with the first acceptable result, or ``status='failed'``
        with ``result=None`` and the reasons of every attempt.

    Examples
    --------
    >>> fit = fit_mixed(sleep, "Reaction ~ Days", "Subject", "~Days")  # doctest: +SKIP
    >>> round(fit.result.fe_params["Days"], 3)  # doctest: +SKIP
    10.467
    """
    n_groups, n_obs = int(data[groups].nunique()), len(data)
    attempts: list[dict] = []
    checks: dict = {}
    try:
        model = MixedLM.from_formula(formula, data=data, groups=data[groups], re_formula=re_formula,
                                     missing="raise")
    except (PatsyError, MissingDataError, ValueError, KeyError) as exc:  # bad formula, unknown column, gaps
        raise ModelError(f"model {formula!r} cannot be built from the data: {exc}") from None
    rank = int(np.linalg.matrix_rank(np.asarray(model.exog, dtype=float)))
    if rank < model.k_fe:
        # Collinear terms (e.g. a covariate that duplicates another): no optimiser can fix this.
        reason = (f"the fixed-effects design is rank-deficient (rank {rank} < {model.k_fe} terms): some terms "
                  f"are collinear in these data; terms: {', '.join(model.exog_names)}")
        return MixedFit(result=None, converged=False, optimizer="", status="failed", reason=reason, checks=checks,
                        formula=formula, re_formula=re_formula, n_groups=n_groups, n_obs=n_obs, attempts=attempts)
    start = moment_start(model)
    for opt in optimizers:
        result, checks, reason = _attempt(model, opt, reml, boundary_tol, start)
        attempts.append({"optimizer": opt, "ok": reason == "", "reason": reason})
        if reason == "":
            return MixedFit(result=result, converged=True, optimizer=opt, status="ok", reason="", checks=checks,
                            formula=formula, re_formula=re_formula, n_groups=n_groups, n_obs=n_obs,
                            attempts=attempts)
    reason = "no optimiser gave a trustworthy fit: " + "; ".join(f"{a['optimizer']}: {a['reason']}" for a in attempts)
    return MixedFit(result=None, converged=False, optimizer="", status="failed", reason=reason, checks=checks,
                    formula=formula, re_formula=re_formula, n_groups=n_groups, n_obs=n_obs, attempts=attempts)


def fit_mixed_with_fallback(
    data: pd.DataFrame,
    formula: str,
    groups: str,
    re_formula: str | None,
    **kwargs,
) -> MixedFit:
    """:func:`fit_mixed`; if the random-slope model fails, refit with a random intercept only.

    Returns
    -------
    MixedFit
        The planned fit (``status='ok'``), the intercept-only refit
        (``status='fallback'``, ``reason`` saying why the planned model
        failed and that the slope variance is now assumed zero), or
        ``status='failed'``.
    """
    fit = fit_mixed(data, formula, groups, re_formula, **kwargs)
    if fit.ok or re_formula is None or re_formula.strip() in ("1", "~1"):
        return fit
    simple = fit_mixed(data, formula, groups, None, **kwargs)
    if not simple.ok:
        simple.reason = (f"planned model (random effects {re_formula}) failed: {fit.reason}; "
                         f"random-intercept refit failed too: {simple.reason}")
        simple.re_formula = re_formula
        return simple
    simple.status = "fallback"
    simple.reason = (f"planned model with random effects {re_formula} failed ({fit.reason}); refitted with a "
                     "random intercept only, which assumes every client's trajectory has the same slope apart "
                     "from the fixed effects -- standard errors of slope contrasts may be too small")
    simple.attempts = fit.attempts + simple.attempts
    return simple


def moment_start(model: MixedLM) -> MixedLMParams | None:
    """Starting values for the random-effects covariance from per-client least squares.

    statsmodels starts from an identity covariance; when a random slope's
    variance is far from 1 (pain per week varies by ~0.3 points, but
    intercepts by ~1.5) L-BFGS can stop short. Start instead from the
    covariance of per-group least-squares fits of the OLS residuals on the
    random-effects design, relative to the residual variance (the
    parameterisation statsmodels optimises). Groups with too few
    observations are skipped; None (statsmodels' default) if under 3 remain.
    """
    endog, exog = np.asarray(model.endog, dtype=float), np.asarray(model.exog, dtype=float)
    beta, *_ = np.linalg.lstsq(exog, endog, rcond=None)
    resid = endog - exog @ beta
    scale = float(resid.var())
    k = model.k_re
    coefs = []
    for z, r in zip(model.exog_re_li, model.group_list(resid)):
        if z.shape[0] > k and np.linalg.matrix_rank(z) == k:
            coefs.append(np.linalg.lstsq(z, r, rcond=None)[0])
    if len(coefs) < 3 or not scale > 0:
        return None
    cov = np.atleast_2d(np.cov(np.asarray(coefs), rowvar=False)) / scale
    eig, vec = np.linalg.eigh((cov + cov.T) / 2)
    eig = np.clip(eig, max(eig.max(), 1e-6) * 1e-3, None)  # strictly inside the parameter space
    return MixedLMParams.from_components(fe_params=np.zeros(model.k_fe), cov_re=(vec * eig) @ vec.T)


def _attempt(
    model: MixedLM, opt: str, reml: bool, tol: float, start: MixedLMParams | None = None
) -> tuple[MixedLMResults | None, dict, str]:
    """One optimiser: fit, then check. Returns (result, checks, reason); reason '' means acceptable."""
    checks: dict = {"optimizer": opt, "converged": False, "boundary": None, "boundary_component": None,
                    "hessian_pd": None, "fe_cov_pd": None, "gradient_norm": None, "warnings": []}
    # Catch only the warnings statsmodels uses to say "do not trust this fit", and
    # numerical RuntimeWarnings from the optimiser; both are failures of this attempt.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("always", SingularMatrixWarning)
        warnings.simplefilter("always", RuntimeWarning)
        try:
            result = model.fit(reml=reml, method=[opt], start_params=start)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, OverflowError) as exc:
            return None, checks, f"optimiser error ({exc.__class__.__name__}: {exc})"
    messages = sorted({str(w.message) for w in caught})
    checks["warnings"] = messages
    checks["converged"] = bool(result.converged)
    checks["gradient_norm"] = _gradient_norm(result)

    problems: list[str] = []
    if not result.converged:
        problems.append("optimiser did not converge")
    serious = [m for m in messages if not m.startswith(STATSMODELS_BOUNDARY)]
    if serious:
        problems.append("warnings: " + " | ".join(serious))

    fe_cov = np.asarray(result.cov_params())[: model.k_fe, : model.k_fe]
    full_cov = np.asarray(result.cov_params())
    checks["fe_cov_pd"] = _is_pd(fe_cov)
    checks["hessian_pd"] = _is_pd(full_cov)
    if not checks["fe_cov_pd"]:
        problems.append("fixed-effects covariance not finite/positive definite")
    elif not checks["hessian_pd"]:
        problems.append("Hessian not negative definite (parameter covariance not positive definite)")

    boundary, component = _boundary(result, tol)
    checks["boundary"], checks["boundary_component"] = boundary, component
    if boundary:
        problems.append(f"random effect on the boundary ({component})")
    if not np.all(np.isfinite(result.fe_params)):
        problems.append("non-finite fixed effects")
    return (result if not problems else None), checks, "; ".join(problems)


def _is_pd(m: np.ndarray) -> bool:
    if m.size == 0:
        return True
    if not np.all(np.isfinite(m)):
        return False
    sym = (m + m.T) / 2.0
    try:
        eig = np.linalg.eigvalsh(sym)
    except np.linalg.LinAlgError:
        return False
    return bool(eig.min() > 0)


def _gradient_norm(result: MixedLMResults) -> float | None:
    """Norm of the profile log-likelihood gradient at the estimate (small = a stationary point)."""
    model = result.model
    try:
        packed = result.params_object.get_packed(use_sqrt=model.use_sqrt, has_fe=False)
        with warnings.catch_warnings(record=True):
            # The score can overflow at a degenerate estimate; that fit fails other checks anyway.
            warnings.simplefilter("always", RuntimeWarning)
            grad = model.score(packed)
        norm = float(np.sqrt(np.sum(np.asarray(grad) ** 2)))
    except (np.linalg.LinAlgError, ValueError):
        return None
    return norm if np.isfinite(norm) else None


def _boundary(result: MixedLMResults, tol: float) -> tuple[bool, str | None]:
    """Is a random-effect variance ~0 relative to the residual, or a correlation ~ +/-1?"""
    cov_re = np.asarray(result.cov_re, dtype=float)
    names = _re_names(result)
    scale = float(result.scale)
    for i, name in enumerate(names):
        if not np.isfinite(cov_re[i, i]) or cov_re[i, i] <= tol * scale:
            return True, f"variance of {name} = {cov_re[i, i]:.3g} <= {tol:g} x residual variance {scale:.3g}"
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            r = cov_re[i, j] / np.sqrt(cov_re[i, i] * cov_re[j, j])
            if abs(r) >= 1 - CORR_TOL:
                return True, f"correlation of {names[i]} and {names[j]} = {r:.4f}"
    return False, None


def _re_names(result: MixedLMResults) -> list[str]:
    """Random-effect names, statsmodels' 'Group' renamed 'Intercept'."""
    return ["Intercept" if n == "Group" else str(n) for n in result.model.data.exog_re_names]


def wald(estimate: float, se: float, alpha: float) -> dict:
    """Normal-approximation estimate, se, CI and two-sided p as floats (NaN when se is unusable)."""
    z = stats.norm.ppf(1 - alpha / 2)
    if not (np.isfinite(se) and se > 0):
        return dict(estimate=float(estimate), se=float("nan"), ci_low=float("nan"), ci_high=float("nan"),
                    p_value=float("nan"))
    return dict(estimate=float(estimate), se=float(se), ci_low=float(estimate - z * se),
                ci_high=float(estimate + z * se), p_value=float(2 * stats.norm.sf(abs(estimate / se))))


def fixed_effects_cov(fit: MixedFit) -> pd.DataFrame:
    """Covariance matrix of the fixed effects (rows/columns named as the fixed effects)."""
    _require(fit)
    res = fit.result
    names = list(res.fe_params.index)
    cov = np.asarray(res.cov_params())[: len(names), : len(names)]
    return pd.DataFrame(cov, index=names, columns=names)


def mixed_summary(fit: MixedFit, alpha: float = 0.05) -> dict:
    """Fixed effects, random effects and fit evidence as plain dicts (JSON-ready).

    Returns
    -------
    dict
        ``fixed_effects`` {name: {estimate, se, ci_low, ci_high, p_value}},
        ``random_effects`` {``variances`` {name: v}, ``covariance`` {"cov(a, b)": c},
        ``correlation`` {"corr(a, b)": r}, ``residual_variance``},
        ``converged``, ``optimizer``, ``status``, ``reason``, ``checks``,
        ``n_groups``, ``n_obs``. For a failed fit the effects are empty.
    """
    out = dict(converged=fit.converged, optimizer=fit.optimizer, status=fit.status, reason=fit.reason,
               checks=fit.checks, n_groups=fit.n_groups, n_obs=fit.n_obs, fixed_effects={},
               random_effects={"variances": {}, "covariance": {}, "correlation": {}, "residual_variance": None})
    if not fit.ok:
        return out
    res = fit.result
    cov = fixed_effects_cov(fit)
    out["fixed_effects"] = {name: wald(res.fe_params[name], np.sqrt(cov.loc[name, name]), alpha)
                            for name in res.fe_params.index}
    cov_re = np.asarray(res.cov_re, dtype=float)
    names = _re_names(res)
    re = out["random_effects"]
    re["variances"] = {n: float(cov_re[i, i]) for i, n in enumerate(names)}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            re["covariance"][f"cov({names[i]}, {names[j]})"] = float(cov_re[i, j])
            re["correlation"][f"corr({names[i]}, {names[j]})"] = float(
                cov_re[i, j] / np.sqrt(cov_re[i, i] * cov_re[j, j]))
    re["residual_variance"] = float(res.scale)
    return out


def linear_contrast(fit: MixedFit, weights: dict[str, float], alpha: float = 0.05) -> dict:
    """Wald estimate of a linear combination of fixed effects, ``sum(w * beta)``.

    Parameters
    ----------
    fit : an accepted :class:`MixedFit`.
    weights : fixed-effect name -> weight, e.g. ``{'week:hip': 6.0}`` for the
        difference in change at week 6.
    alpha : 1 - confidence level.

    Returns
    -------
    dict with ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``p_value``.
    """
    cov = fixed_effects_cov(fit)
    unknown = sorted(set(weights) - set(cov.index))
    if unknown:
        raise ModelError(f"contrast names {unknown} are not fixed effects of {fit.formula!r}; "
                         f"known: {list(cov.index)}")
    names = list(weights)
    w = np.array([float(weights[n]) for n in names])
    beta = fit.result.fe_params[names].to_numpy(dtype=float)
    v = cov.loc[names, names].to_numpy()
    return wald(float(w @ beta), float(np.sqrt(max(w @ v @ w, 0.0))), alpha)


def _require(fit: MixedFit) -> None:
    if not fit.ok:
        raise ModelError(f"the model {fit.formula!r} did not give a trustworthy fit: {fit.reason}")
