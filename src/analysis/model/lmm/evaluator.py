"""The objective's values at every theta one fit asks for, each point solved once.

The finite-difference Hessians of the convergence proof (:func:`.optimize.check_optimum`), the Newton
polish and the Satterthwaite df (:func:`.inference.satterthwaite`) all step to the same
``theta +/- h e_k``; an :class:`Evaluator` kept with the fit solves each point's PLS problem once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.model.lmm import objective as ob
from analysis.model.lmm.design import Design


@dataclass(frozen=True)
class _Point:
    dev: float
    T: np.ndarray
    sums: ob.Sums | None  # None: only the deviance was asked for
    error: np.linalg.LinAlgError | None


class Evaluator:
    """:func:`.objective.deviance`, ``gradient`` and ``deviance_and_gradient``, remembering every theta asked for.

    The finite-difference Hessians of the convergence proof, the Newton polish and the Satterthwaite df
    all step to the same ``theta +/- h e_k``; each point's PLS solve is done once. Only the deviance and
    the q x q :class:`.objective.Sums` are kept (never the per-group arrays), and the values are those of the
    plain functions bit for bit.
    """

    def __init__(self, d: Design, reml: bool) -> None:
        self.d, self.reml = d, reml
        self._points: dict[bytes, _Point] = {}
        self.solves = 0

    def point(self, theta: np.ndarray, need_sums: bool = True) -> _Point:
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        pt = self._points.get(key)
        if pt is not None and (pt.sums is not None or not need_sums or pt.error is not None):
            return pt
        self.solves += 1
        try:
            s = ob.solve_pls(self.d, theta)
        except np.linalg.LinAlgError as exc:
            pt = _Point(dev=float("inf"), T=ob.make_T(theta, self.d.q), sums=None, error=exc)
        else:
            dev = ob.deviance_from_pls(self.d, s, self.reml)
            sm = ob.sums(self.d, s, self.reml) if need_sums else None
            pt = _Point(dev=dev, T=s.T, sums=sm, error=None)
        self._points[key] = pt
        return pt

    def sums(self, theta: np.ndarray) -> tuple[ob.Sums, np.ndarray]:
        """(:class:`.objective.Sums`, T) at ``theta``; raises LinAlgError where the PLS system cannot be solved."""
        pt = self.point(theta)
        if pt.error is not None:
            raise pt.error
        assert pt.sums is not None
        return pt.sums, pt.T

    def deviance(self, theta: np.ndarray) -> float:
        return self.point(theta, need_sums=False).dev

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        sm, T = self.sums(theta)
        return ob.grad_from_s(ob.s_from_sums(self.d, sm, self.reml), T, self.d.q)

    def deviance_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        pt = self.point(theta)
        if pt.error is not None or not np.isfinite(pt.dev) or pt.sums is None:
            return pt.dev, np.zeros_like(np.asarray(theta, dtype=float))
        return pt.dev, ob.grad_from_s(ob.s_from_sums(self.d, pt.sums, self.reml), pt.T, self.d.q)
