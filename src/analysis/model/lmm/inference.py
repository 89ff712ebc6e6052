"""Inference: fixed-effects covariance, Satterthwaite and Kenward-Roger degrees of freedom.

lme4's ``mkMerMod`` plus lmerTest's and pbkrtest's layers, evaluated from the
per-group blocks of :mod:`.objective` (no N x N matrix anywhere).

Covariance of beta: ``sigma^2 (X'V^-1 X)^-1`` (lme4 ``vcov``; nlme and SAS
likewise), with sigma^2 = r2 / (n - p) under REML and r2 / n under ML.

**Satterthwaite** (lmerTest 3.1 ``as_lmerModLT`` / ``contest1D``): the variance
parameters are ``varpar = (theta, sigma)``; ``A = 2 H^+`` where H is the
Hessian of the deviance ``dev(theta, sigma) = ldL2 + r2/sigma^2 + n log(2 pi
sigma^2) [+ log|RX'RX| - p log(2 pi sigma^2) for REML]`` at the estimate
(lmerTest takes it by numerical differentiation; here by central differences of
the exact gradient); ``J_k = d vcov(beta) / d varpar_k`` is exact
(``d (X'V^-1X)^-1 / d theta_k = C^-1 (sum_g P_g' dG_k P_g) C^-1``). For a
contrast ``L``: ``nu = 2 (L' Phi L)^2 / (g' A g)``, ``g_k = L' J_k L``.

**Kenward-Roger** (pbkrtest 0.5 ``vcovAdj`` / ``Lb_ddf``, always on the REML fit,
as pbkrtest refits ML models with REML): the covariance parameters are the
variances and covariances of the random effects and the residual variance,
``Sigma = sum_r gamma_r G_r``; ``P_r = -X'S^-1 G_r S^-1 X``,
``Q_rs = X'S^-1 G_r S^-1 G_s S^-1 X``, ``K_rs = tr(S^-1 G_r S^-1 G_s)``,
``I_rs = K_rs - 2 tr(Phi Q_rs) + tr(Phi P_r Phi P_s)``, ``W = 2 I^-1``,
``U = sum_rs W_rs (Q_rs - P_r Phi P_s)``, adjusted covariance
``Phi_A = Phi + 2 Phi U Phi``; the df follow pbkrtest's ``Lb_ddf`` formula. Every
product is a sum of per-group q x q / q x p pieces (Woodbury).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.model.lmm import objective as ob
from analysis.model.lmm.blas import single_threaded
from analysis.model.lmm.design import Design
from analysis.model.lmm.evaluator import Evaluator
from analysis.model.lmm.optimize import hessian_fd


def sigma2_hat(d: Design, s: ob.PLS, reml: bool) -> float:
    """Residual variance: penalised RSS over n - p (REML) or n (ML)."""
    return s.r2 / (d.n_obs - (d.p if reml else 0))


def _elem(q: int, r: int, c: int) -> np.ndarray:
    E = np.zeros((q, q))
    E[r, c] = 1.0
    return E


def d_G(T: np.ndarray, q: int) -> list[np.ndarray]:
    """``d(T T')/d theta_k`` for every theta element."""
    return [_elem(q, r, c) @ T.T + T @ _elem(q, r, c).T for r, c in ob.theta_index(q)]


# --------------------------------------------------------------------------- Satterthwaite


@dataclass(frozen=True)
class Satterthwaite:
    """The pieces of lmerTest's Satterthwaite df: ``A`` = vcov(varpar), ``jac`` = d vcov(beta)/d varpar."""

    A: np.ndarray
    jac: np.ndarray  # (k, p, p)
    hessian_eigenvalues: np.ndarray

    def df(self, L: np.ndarray, vcov: np.ndarray) -> float:
        L = np.asarray(L, dtype=float)
        var = float(L @ vcov @ L)
        g = np.einsum("p,kpr,r->k", L, self.jac, L)
        denom = float(g @ self.A @ g)
        return float(2.0 * var**2 / denom) if denom > 0 else float("inf")


def _vp_gradient(ev: Evaluator, vp: np.ndarray) -> np.ndarray:
    d, reml = ev.d, ev.reml
    theta, sigma = vp[:-1], float(vp[-1])
    sm, T = ev.sums(theta)
    S = ob.s_from_sums(d, sm, reml, scale=sigma**2)
    m = d.n_obs - (d.p if reml else 0)
    g_sigma = -2.0 * sm.r2 / sigma**3 + 2.0 * m / sigma
    grad: np.ndarray = np.r_[ob.grad_from_s(S, T, d.q), g_sigma]
    return grad


def ginv(H: np.ndarray) -> np.ndarray:
    """Moore-Penrose inverse with MASS::ginv's tolerance (sqrt(eps) x largest singular value)."""
    return np.linalg.pinv(H, rcond=np.sqrt(np.finfo(float).eps))


@single_threaded
def satterthwaite(
    d: Design, theta: np.ndarray, reml: bool, ev: Evaluator | None = None, s: ob.PLS | None = None
) -> Satterthwaite:
    """lmerTest's vcov(varpar) and the Jacobian of vcov(beta), at the estimate ``theta``.

    ``ev``: the fit's :class:`~.evaluator.Evaluator` (its points theta +/- h e_k are the ones this
    Hessian steps to); ``s``: the PLS solution at ``theta`` if already at hand.
    """
    ev = ev if ev is not None and ev.d is d and ev.reml == reml else Evaluator(d, reml)
    s = s if s is not None else ob.solve_pls(d, theta)
    sigma = float(np.sqrt(sigma2_hat(d, s, reml)))
    vp = np.r_[theta, sigma]
    H = hessian_fd(lambda v: _vp_gradient(ev, v), vp)
    A = 2.0 * ginv(H)
    bl = ob.blocks(d, s)
    Cinv = s.unscaled_cov()
    jac = [sigma**2 * Cinv @ ob.gsum(bl.P, dG @ bl.P) @ Cinv for dG in d_G(s.T, d.q)]
    jac.append(2.0 * sigma * Cinv)
    return Satterthwaite(A=A, jac=np.array(jac), hessian_eigenvalues=np.linalg.eigvalsh(H))


# --------------------------------------------------------------------------- Kenward-Roger


@dataclass(frozen=True)
class KenwardRoger:
    """pbkrtest's adjusted covariance ``Phi_A`` with its ``P`` list and ``W`` matrix (REML fit)."""

    phi: np.ndarray
    phi_adj: np.ndarray
    P: np.ndarray  # (r, p, p)
    W: np.ndarray

    def df(self, L: np.ndarray) -> float:
        """pbkrtest ``Lb_ddf`` for one contrast (q = 1)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        V0 = self.phi
        theta_m = L.T @ np.linalg.solve(L @ V0 @ L.T, L)
        tv = theta_m @ V0
        u = [tv @ Pr @ V0 for Pr in self.P]
        A1 = A2 = 0.0
        n = len(u)
        for i in range(n):
            for j in range(i, n):
                e = 1.0 if i == j else 2.0
                A1 += e * self.W[i, j] * np.trace(u[i]) * np.trace(u[j])
                A2 += e * self.W[i, j] * float(np.sum(u[i] * u[j].T))
        q = L.shape[0]
        B = (A1 + 6.0 * A2) / (2.0 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        c1 = g / (3 * q + 2 * (1 - g))
        c2 = (q - g) / (3 * q + 2 * (1 - g))
        c3 = (q + 2 - g) / (3 * q + 2 * (1 - g))
        v0 = 1 + c1 * B
        v1 = 1 - c2 * B
        v2 = 1 - c3 * B
        v0 = 0.0 if abs(v0) < 1e-10 else v0
        x, y = 1 - A2 / q, v1
        ratio = 1.0 if abs(x) < 1e-14 and abs(y) < 1e-14 else x / y
        rho = ratio**2 * v0 / v2 / q
        return float(4 + (q + 2) / (q * rho - 1))


@single_threaded
def kenward_roger(d: Design, theta: np.ndarray) -> KenwardRoger:
    """pbkrtest's ``vcovAdj`` at the REML estimate ``theta``, from per-group blocks."""
    q, p = d.q, d.p
    s = ob.solve_pls(d, theta)
    s2 = sigma2_hat(d, s, True)
    bl = ob.blocks(d, s)
    H, ZVZ, P, ZtZ = bl.H, bl.ZVZ, bl.P, d.ZtZ
    ZtZH = ZtZ @ H
    ZV2X = P - ZtZH @ P
    ZV2Z = ZVZ - ZtZH @ ZVZ
    K = H @ d.ZtX
    ZtXK = ob.gsum(d.ZtX, K)
    XV2X = d.XtX - ZtXK - ZtXK.T + ob.gsum(K, ZtZ @ K)
    XV3X = XV2X - ob.gsum(P, H @ P)
    HZ = H @ ZtZ
    trV2 = float(d.n_obs - 2.0 * np.trace(HZ, axis1=1, axis2=2).sum() + np.einsum("gab,gba->", HZ, HZ))
    # covariance parameters: lower triangle of the random-effects covariance, then the residual
    E = []
    for r, c in ob.theta_index(q):
        m = _elem(q, r, c)
        E.append(m + m.T if r != c else m)
    nre = len(E)
    n_g = nre + 1
    PP = [-ob.gsum(P, Er @ P) / s2**2 for Er in E] + [-XV2X / s2**2]
    QQ: dict[tuple[int, int], np.ndarray] = {}
    Kt = np.empty((n_g, n_g))
    for i in range(n_g):
        for j in range(i, n_g):
            if i < nre and j < nre:
                QQ[i, j] = ob.gsum(P, E[i] @ ZVZ @ E[j] @ P) / s2**3
                Kt[i, j] = np.einsum("gab,gba->", ZVZ @ E[i], ZVZ @ E[j]) / s2**2
            elif i < nre:
                QQ[i, j] = ob.gsum(P, E[i] @ ZV2X) / s2**3
                Kt[i, j] = np.einsum("ab,gba->", E[i], ZV2Z) / s2**2
            else:
                QQ[i, j] = XV3X / s2**3
                Kt[i, j] = trV2 / s2**2
            Kt[j, i] = Kt[i, j]
    Phi = s2 * s.unscaled_cov()
    IE2 = np.empty((n_g, n_g))
    for i in range(n_g):
        PhiPi = Phi @ PP[i]
        for j in range(i, n_g):
            IE2[i, j] = IE2[j, i] = Kt[i, j] - 2.0 * np.sum(Phi * QQ[i, j]) + np.sum(PhiPi * (PP[j] @ Phi))
    condi = np.min(np.abs(np.linalg.eigvalsh(IE2)))
    W = 2.0 * (np.linalg.inv(IE2) if condi > 1e-10 else ginv(IE2))
    W = (W + W.T) / 2.0
    U = np.zeros((p, p))
    for i in range(n_g - 1):
        for j in range(i + 1, n_g):
            U += W[i, j] * (QQ[i, j] - PP[i] @ Phi @ PP[j])
    U = U + U.T
    for i in range(n_g):
        U += W[i, i] * (QQ[i, i] - PP[i] @ Phi @ PP[i])
    phi_adj = Phi + 2.0 * Phi @ U @ Phi
    return KenwardRoger(phi=Phi, phi_adj=phi_adj, P=np.array(PP), W=W)
