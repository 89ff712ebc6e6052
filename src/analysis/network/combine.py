"""The network lead's arithmetic: from the network's summed pieces to lme4's numbers at one theta.

With ``P = sum_k pieces_k`` (:mod:`.pieces`), ``K`` clinics, ``pc`` common columns and
``p = pc + K`` fixed effects in all:

- ``beta = S^-1 r`` (``S = P.S``), ``r2 = P.yy - r' beta`` (penalised RSS),
  ``log|X'V^-1X| = log|S| + P.ldA``;
- REML criterion ``ldL2 + log|X'V^-1X| + (n - p)(1 + log(2 pi r2 / (n - p)))`` (lme4 ``REMLcrit``);
- gradient ``tr(S_theta dG_k)`` with ``S_theta = A - m W / r2 - B`` (:mod:`analysis.model.lmm.objective`),
  where ``W = sum_g w_g w_g' = Saa - SaP.beta - (SaP.beta)' + beta' SPP beta`` and
  ``B = sum_g P_g K P_g' = SPP : S^-1 + Baa``;
- Satterthwaite (lmerTest): the gradient at a fixed sigma (``W / sigma^2``) for the Hessian in
  ``varpar = (theta, sigma)``, and ``d vcov(beta) / d theta_k = sigma^2 S^-1 (SPP : dG_k) S^-1``.

Only ML = False (REML) is used by the network; the single-frame engine's ML path is not repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.model.lmm import objective as ob
from analysis.model.lmm.inference import d_G
from analysis.network.pieces import Pieces


@dataclass(frozen=True)
class Evaluation:
    """The network model at one theta (REML)."""

    theta: np.ndarray
    T: np.ndarray
    beta: np.ndarray
    S_inv: np.ndarray
    r2: float
    deviance: float
    m: float  # n - p
    pieces: Pieces

    @property
    def sigma2(self) -> float:
        return self.r2 / self.m

    def w_matrix(self) -> np.ndarray:
        P, b = self.pieces, self.beta
        Wab = P.SaP @ b
        return np.asarray(P.Saa - Wab - Wab.T + np.einsum("p,apbr,r->ab", b, P.SPP, b))

    def b_matrix(self) -> np.ndarray:
        return np.asarray(np.einsum("apbr,pr->ab", self.pieces.SPP, self.S_inv) + self.pieces.Baa)

    def s_theta(self, scale: float | None = None) -> np.ndarray:
        """``S_theta`` of the gradient; ``scale`` None profiles sigma^2, a value fixes it."""
        W = self.w_matrix()
        S = self.pieces.A - (W * self.m / self.r2 if scale is None else W / scale) - self.b_matrix()
        return np.asarray((S + S.T) / 2.0)

    def gradient(self) -> np.ndarray:
        """Exact gradient of the REML criterion in theta."""
        return ob.grad_from_s(self.s_theta(), self.T, self.T.shape[0])

    def vp_gradient(self, sigma: float) -> np.ndarray:
        """Gradient of the REML deviance in ``varpar = (theta, sigma)`` at a fixed sigma (lmerTest)."""
        g_theta = ob.grad_from_s(self.s_theta(scale=sigma**2), self.T, self.T.shape[0])
        g_sigma = -2.0 * self.r2 / sigma**3 + 2.0 * self.m / sigma
        return np.asarray(np.r_[g_theta, g_sigma])

    def vcov_jacobian(self, sigma: float) -> np.ndarray:
        """``d vcov(beta) / d varpar`` (k, pc, pc), as :func:`analysis.model.lmm.inference.satterthwaite`."""
        jac = [
            sigma**2 * self.S_inv @ np.einsum("apbr,ab->pr", self.pieces.SPP, dG) @ self.S_inv
            for dG in d_G(self.T, self.T.shape[0])
        ]
        jac.append(2.0 * sigma * self.S_inv)
        return np.array(jac)


def evaluate(P: Pieces, theta: np.ndarray, n_clinics: int) -> Evaluation:
    """The REML criterion and everything derived from the summed pieces at ``theta``.

    Raises numpy.linalg.LinAlgError where ``S`` is not positive definite (columns not estimable).
    """
    theta = np.asarray(theta, dtype=float)
    q = P.A.shape[0]
    pc = P.r.size
    S = (P.S + P.S.T) / 2.0
    L = np.linalg.cholesky(S)
    cb = np.linalg.solve(L, P.r)
    beta = np.linalg.solve(L.T, cb)
    r2 = float(P.yy[0] - cb @ cb)
    m = float(P.n[0]) - (pc + n_clinics)
    Linv = np.linalg.inv(L)
    ldRX2 = 2.0 * float(np.sum(np.log(np.diag(L)))) + float(P.ldA[0])
    dev = float(P.ldL2[0] + ldRX2 + m * (1.0 + ob.LOG_2PI + np.log(r2 / m))) if r2 > 0 else float("inf")
    return Evaluation(
        theta=theta,
        T=ob.make_T(theta, q),
        beta=beta,
        S_inv=Linv.T @ Linv,
        r2=r2,
        deviance=dev,
        m=m,
        pieces=P,
    )
