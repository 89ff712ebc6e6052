"""The project's linear mixed-model engine, in lme4's formulation (Bates et al. 2015, JSS 67(1)).

Why not a library: statsmodels' ``MixedLM`` loops over groups in Python,
optimises beta and the covariance jointly, returns the inverse of the full
(beta, theta) Hessian as the fixed-effects covariance (not lme4's
``sigma^2 (X'V^-1 X)^-1``) and has no Satterthwaite or Kenward-Roger df. No
maintained Python package offers lme4's profiled criterion with lmerTest's and
pbkrtest's inference, so the engine is written here, small, in the four stages
lme4 uses, and every stage is tested against committed R reference numbers
(tests/reference/):

- :mod:`.design`    setup (``lFormula``): matrices and per-client sufficient statistics;
- :mod:`.objective` the profiled REML/ML deviance of theta and its exact gradient (``mkLmerDevfun``);
- :mod:`.optimize`  bounded optimiser with a provable-optimum check (``optimizeLmer``);
- :mod:`.inference` vcov, Satterthwaite and Kenward-Roger df (``mkMerMod``, lmerTest, pbkrtest);
- :mod:`.blas`      one OpenBLAS thread while the optimiser and the df run (see there why).

:func:`fit` ties them together and returns an :class:`LmmFit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.model.lmm import objective as ob
from analysis.model.lmm.design import Design, from_arrays, from_formula
from analysis.model.lmm.inference import KenwardRoger, Satterthwaite, kenward_roger, satterthwaite, sigma2_hat
from analysis.model.lmm.optimize import Optimum, optimize_theta

DF_METHODS = ("satterthwaite", "kenward_roger", "z")

__all__ = ["DF_METHODS", "Design", "LmmFit", "fit", "from_arrays", "from_formula"]


#: Contrast weights: one per fixed effect (array or sequence), or ``{name: weight}`` (others 0).
Weights = np.ndarray | Sequence[float] | Mapping[str, float]


@dataclass
class LmmFit:
    """A fitted linear mixed model (ML or REML) and its inference.

    Attributes
    ----------
    design : the :class:`Design`.
    reml : REML (True) or ML.
    optimum : theta and the convergence evidence (:class:`Optimum`).
    """

    design: Design
    reml: bool
    optimum: Optimum

    @cached_property
    def pls(self) -> ob.PLS:
        return ob.solve_pls(self.design, self.optimum.theta)

    @property
    def theta(self) -> np.ndarray:
        return self.optimum.theta

    @property
    def converged(self) -> bool:
        return self.optimum.converged

    @property
    def singular(self) -> bool:
        return self.optimum.singular

    @property
    def sigma2(self) -> float:
        """Residual variance (lme4 ``sigma(fit)^2``)."""
        return sigma2_hat(self.design, self.pls, self.reml)

    @property
    def fe_params(self) -> pd.Series:
        return pd.Series(self.pls.beta, index=self.design.fixed_names, name="estimate")

    @cached_property
    def vcov(self) -> np.ndarray:
        """``sigma^2 (X'V^-1 X)^-1`` (lme4 ``vcov``)."""
        return self.sigma2 * self.pls.unscaled_cov()

    def vcov_frame(self) -> pd.DataFrame:
        names = self.design.fixed_names
        return pd.DataFrame(self.vcov, index=names, columns=names)

    @property
    def cov_re(self) -> np.ndarray:
        """Covariance matrix of the random effects, ``sigma^2 T T'`` (lme4 ``VarCorr``)."""
        T = self.pls.T
        cov: np.ndarray = self.sigma2 * T @ T.T
        return cov

    @property
    def deviance(self) -> float:
        """REML criterion (REML fits) or deviance (ML fits), as lme4 reports them."""
        return self.optimum.deviance

    @property
    def loglik(self) -> float:
        return -self.deviance / 2.0

    @cached_property
    def random_effects(self) -> pd.DataFrame:
        """Conditional modes (BLUPs), one row per group (index = group label), columns = re_names."""
        return pd.DataFrame(
            self.pls.b(), index=pd.Index(self.design.group_labels, name="group"), columns=self.design.re_names
        )

    @cached_property
    def fitted(self) -> np.ndarray:
        """Fitted values ``X beta + Z b`` in the caller's row order."""
        d = self.design
        b = self.pls.b()[d.group_codes]
        sorted_fit: np.ndarray = d.X @ self.pls.beta + np.sum(d.Z * b, axis=1)
        out = np.empty_like(sorted_fit)
        out[d.order] = sorted_fit
        return out

    @cached_property
    def satterthwaite(self) -> Satterthwaite:
        return satterthwaite(self.design, self.theta, self.reml, self.optimum.evaluator, self.pls)

    @cached_property
    def kenward_roger(self) -> KenwardRoger:
        """pbkrtest's adjustment, always from the REML fit (refitted when this fit is ML)."""
        if self.reml:
            return kenward_roger(self.design, self.theta)
        refit = fit(self.design, reml=True)
        return kenward_roger(self.design, refit.theta)

    def contrast(self, L: Weights, df_method: str = "satterthwaite", alpha: float = 0.05) -> dict[str, Any]:
        """Estimate, SE, df, t-based CI and two-sided p of ``L' beta``.

        Parameters
        ----------
        L : weights, one per fixed effect (array) or ``{name: weight}``.
        df_method : ``'satterthwaite'`` (lmerTest), ``'kenward_roger'`` (pbkrtest:
            adjusted SE and df) or ``'z'`` (Wald, df = inf).

        Returns
        -------
        dict with ``estimate``, ``se``, ``df``, ``ci_low``, ``ci_high``, ``p_value``, ``df_method``.
        """
        Lv = self._weights(L)
        est = float(Lv @ self.pls.beta)
        if df_method == "z":
            se, df = float(np.sqrt(max(Lv @ self.vcov @ Lv, 0.0))), float("inf")
        elif df_method == "satterthwaite":
            se = float(np.sqrt(max(Lv @ self.vcov @ Lv, 0.0)))
            df = self.satterthwaite.df(Lv, self.vcov)
        elif df_method == "kenward_roger":
            kr = self.kenward_roger
            se = float(np.sqrt(max(Lv @ kr.phi_adj @ Lv, 0.0)))
            df = kr.df(Lv)
        else:
            raise ValueError(f"df_method must be one of {DF_METHODS}, not {df_method!r}")
        return t_interval(est, se, df, alpha) | {"df_method": df_method}

    def _weights(self, L: Weights) -> np.ndarray:
        names = self.design.fixed_names
        if isinstance(L, Mapping):
            unknown = sorted(set(L) - set(names))
            if unknown:
                raise KeyError(f"{unknown} are not fixed effects; known: {names}")
            return np.array([float(L.get(n, 0.0)) for n in names])
        Lv = np.asarray(L, dtype=float).ravel()
        if Lv.size != len(names):
            raise ValueError(f"contrast has {Lv.size} weights for {len(names)} fixed effects")
        return Lv


def t_interval(estimate: float, se: float, df: float, alpha: float = 0.05) -> dict[str, Any]:
    """``estimate +/- t(df) se`` and the two-sided p (normal when df is inf); NaN when unusable."""
    if not (np.isfinite(se) and se > 0 and df > 0):
        nan = float("nan")
        return dict(
            estimate=float(estimate),
            se=float(se) if np.isfinite(se) else nan,
            df=nan,
            ci_low=nan,
            ci_high=nan,
            p_value=nan,
        )
    # stats.t.ppf(q, df), not stats.t(df).ppf(q): the same numbers without building a frozen distribution
    # (~0.4 ms each, which added up over the self-check's thousands of contrasts)
    finite = bool(np.isfinite(df))
    crit = float(stats.t.ppf(1 - alpha / 2, df) if finite else stats.norm.ppf(1 - alpha / 2))
    z = abs(estimate / se)
    return dict(
        estimate=float(estimate),
        se=float(se),
        df=float(df),
        ci_low=float(estimate - crit * se),
        ci_high=float(estimate + crit * se),
        p_value=float(2 * (stats.t.sf(z, df) if finite else stats.norm.sf(z))),
    )


def fit(design: Design, reml: bool = True, starts: list[np.ndarray] | None = None) -> LmmFit:
    """Fit the model: optimise theta (:func:`.optimize.optimize_theta`) and wrap the result."""
    return LmmFit(design=design, reml=reml, optimum=optimize_theta(design, reml, starts))
